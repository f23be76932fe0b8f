"""A 410 storm: half the subscribers of a topic vanish while events are being fanned out.

API Gateway delivers ``$disconnect`` at most once, sometimes late, sometimes never; a client
on a train loses its socket without a close frame. Then the only news that a connection is
gone is the management API answering ``410 Gone`` to the next post. This stack's
``$disconnect`` is deployed as a function that does nothing (the event that never came), so
all cleanup must come from the 410s: the vanished connections and their subscriptions are
pruned, never retried, and the subscribers still there receive every event, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from reliability_support import RawClient, deployed_functions, open_client, stack_config, wait_until
from streamer_core.storage import ConnectionStore, SubscriptionStore
from streamer_handlers import DeliveryReport, publish
from streamer_infra.local import BackgroundStack, LocalStack

SUBSCRIBERS = 40
EVENTS = 30
VANISH_AFTER = 5
TENANT = "storm"
TOPIC = "ticker"


pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _fake_aws_credentials() -> None:
    """The running stack owns the AWS variables (its handlers call the embedded emulator)."""


def lost_disconnect(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A ``$disconnect`` that never arrived: the connection's rows stay behind."""
    return {"statusCode": 200}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    config = stack_config(
        tmp_path_factory.mktemp("gone-storm"),
        functions=deployed_functions(disconnect={"handler": lost_disconnect}),
    )
    with BackgroundStack(config) as running:
        yield running


def stored_connection_id(stack: LocalStack, user: str) -> str:
    store = ConnectionStore(stack.aws_client("dynamodb"), stack.resources.tables["connections"])
    (connection,) = store.list_by_user(TENANT, user).items
    return connection.connection_id


def events_of(client: RawClient) -> list[Any]:
    return [f["data"]["n"] for f in client.frames if f["type"] == "event" and f["topic"] == TOPIC]


async def test_vanished_subscribers_are_pruned_and_the_rest_get_every_event(
    stack: LocalStack,
) -> None:
    """Survivors: every event, in order. Vanished: pruned by their 410s, tried no more."""
    clients = []
    for index in range(SUBSCRIBERS):
        client = await open_client(stack, stack.token(f"sub-{index}", TENANT), f"sub-{index}")
        await client.send("subscribe", {"topic": TOPIC}, id=f"subscribe-{index}")
        clients.append(client)
    stranger = await open_client(stack, stack.token("sub-0", "other-tenant"), "stranger")
    await stranger.send("subscribe", {"topic": TOPIC}, id="subscribe-stranger")
    for index, client in enumerate(clients):
        assert (await client.reply(f"subscribe-{index}"))["type"] == "subscribed"
    assert (await stranger.reply("subscribe-stranger"))["type"] == "subscribed"
    survivors, vanishing = clients[::2], clients[1::2]
    ids = {c.name: stored_connection_id(stack, c.name) for c in clients}
    vanished_ids = {ids[c.name] for c in vanishing}

    reports: list[DeliveryReport] = []

    async def publisher() -> None:
        for number in range(EVENTS):
            reports.append(await asyncio.to_thread(publish, TENANT, TOPIC, {"n": number}))

    publishing = asyncio.create_task(publisher())
    try:
        await survivors[0].wait_for(
            lambda: len(events_of(survivors[0])) >= VANISH_AFTER, "the first events"
        )
        for client in vanishing:
            client.abort()  # mid-fan-out: no close frame, and no $disconnect either
        await asyncio.wait_for(publishing, 120)
    finally:
        if not publishing.done():
            publishing.cancel()

    await wait_until(
        lambda: not vanished_ids & set(stack.gateway.connections), "the gateway saw the drops"
    )
    final = await asyncio.to_thread(publish, TENANT, TOPIC, {"n": EVENTS})
    after = await asyncio.to_thread(publish, TENANT, TOPIC, {"n": EVENTS + 1})
    for client in survivors:
        await client.wait_for(lambda c=client: EVENTS + 1 in events_of(c), "the last event")
    await stranger.send("ping", id="stranger-ping")
    await stranger.reply("stranger-ping")

    survivor_ids = {ids[c.name] for c in survivors}
    assert set(final.delivered) == survivor_ids
    assert set(final.gone) <= vanished_ids
    assert not final.failed
    assert (set(after.delivered), after.gone, after.failed) == (survivor_ids, (), ())
    pruned = set().union(*(r.gone for r in reports), final.gone)
    assert pruned == vanished_ids  # each vanished connection was found gone ...
    assert sum(len(r.gone) for r in (*reports, final)) == len(vanished_ids)  # ... once
    assert all(not r.failed for r in reports)
    for client in survivors:
        assert events_of(client) == list(range(EVENTS + 2)), client.name
    assert events_of(stranger) == []

    connections = ConnectionStore(
        stack.aws_client("dynamodb"), stack.resources.tables["connections"]
    )
    subscriptions = SubscriptionStore(
        stack.aws_client("dynamodb"), stack.resources.tables["subscriptions"]
    )
    for connection_id in vanished_ids:
        assert connections.get(connection_id) is None
        assert subscriptions.topics_of(connection_id) == []
    assert set(subscriptions.all_subscribers(TENANT, TOPIC)) == survivor_ids
    for client in (*survivors, stranger):
        await client.close()
