"""How handler frames reach sockets: in-process by default, boto3 and HTTP on request.

Both transports keep the management API's contract, so every test here runs on both: a
closed connection is gone (pruned, never retried), a frame over the limit is refused
without harming the connection, everything else arrives in order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_support import connection_ids, open_ws, receive, receive_for, send, stack_config
from streamer_handlers import publish
from streamer_handlers.deployment import ManagementSender, get_runtime
from streamer_infra.local import BackgroundStack, DevKeys, LocalStack
from streamer_infra.local._direct_sender import GatewaySender


@pytest.fixture(scope="module", params=["direct", "http"])
def delivery_stack(
    request: pytest.FixtureRequest, e2e_keys: DevKeys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    config = stack_config(e2e_keys, tmp_path_factory.mktemp("stack"), management=request.param)
    with BackgroundStack(config) as stack:
        yield stack


def _subscribers(stack: LocalStack, tenant: str, topic: str) -> list[str]:
    return get_runtime().storage.subscriptions.all_subscribers(tenant, topic)


async def _subscribed(stack: LocalStack, user: str, tenant: str, topic: str) -> Any:
    ws = await open_ws(stack, stack.token(user, tenant))
    await send(ws, "subscribe", {"topic": topic}, id="sub")
    assert (await receive_for(ws, "sub"))["type"] == "subscribed"
    return ws


def test_the_configured_transport_is_the_one_the_handlers_use(delivery_stack: LocalStack) -> None:
    expected = GatewaySender if delivery_stack.config.management == "direct" else ManagementSender
    assert isinstance(get_runtime().sender, expected)


async def test_a_vanished_subscriber_is_reported_gone_and_pruned(
    delivery_stack: LocalStack,
) -> None:
    stay = await _subscribed(delivery_stack, "sam", "acme", "gone-test")
    # A subscription whose socket is gone without a `$disconnect` having cleaned up (a
    # crash, or a race with the disconnect): only the delivery can find out.
    ghost = "ghostConnection0="
    get_runtime().storage.subscriptions.subscribe(
        ghost, "acme", "gone-test", expires_at=int(time.time()) + 600
    )
    try:
        report = await asyncio.to_thread(publish, "acme", "gone-test", {"n": 1})
        assert report.gone == (ghost,)
        assert len(report.delivered) == 1
        assert (await receive(stay))["data"] == {"n": 1}
        assert ghost not in _subscribers(delivery_stack, "acme", "gone-test")
    finally:
        await stay.close()


async def test_an_oversized_frame_fails_and_the_connection_carries_on(
    delivery_stack: LocalStack,
) -> None:
    # publish() itself refuses such a frame before sending; the transport must too, for
    # a sender used directly.
    ws = await _subscribed(delivery_stack, "ola", "acme", "big-test")
    (connection_id,) = connection_ids(delivery_stack, "acme", "ola")
    try:
        limit = delivery_stack.config.limits.max_message_bytes
        sender = get_runtime().sender
        report = await asyncio.to_thread(sender.send, [connection_id], "x" * (limit + 1))
        assert report.failed == (connection_id,)
        assert report.delivered == report.gone == ()
        await asyncio.to_thread(publish, "acme", "big-test", "small")
        assert (await receive(ws))["data"] == "small"
    finally:
        await ws.close()


async def test_frames_to_one_socket_keep_their_order(delivery_stack: LocalStack) -> None:
    ws = await _subscribed(delivery_stack, "ord", "acme", "order-test")
    try:
        for n in range(20):
            await asyncio.to_thread(publish, "acme", "order-test", n)
        assert [(await receive(ws))["data"] for _ in range(20)] == list(range(20))
    finally:
        await ws.close()
