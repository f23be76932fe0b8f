"""Load: 200 clients, many mixed requests each, through the local stack: each answered once.

Under load the failure modes are the quiet ones: a reply dropped when the router's pool is
saturated, a job message delivered twice and run twice, a route response sent to the wrong
socket, an acknowledgment that never comes because the queue write was throttled. Counting
every frame by request id catches all of them: each synchronous request (``echo``,
``ping``, ``subscribe``) gets exactly one reply, each asynchronous one (``generate_report``)
exactly one ``acknowledgment`` and exactly one ``complete``, and nothing gets an ``error``.
No latency is measured here; benchmarks/ does that.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from reliability_support import RawClient, open_client, stack_config
from streamer_infra.local import BackgroundStack, LocalStack

CLIENTS = 200
REQUESTS_PER_CLIENT = int(os.environ.get("RELIABILITY_LOAD_REQUESTS", "10"))
"""10 in the default run (2,000 requests). The full 200 x 50 (RELIABILITY_LOAD_REQUESTS=50)
costs about three and a half minutes on two cores: the whole stack shares one process."""
OPEN_AT_ONCE = CLIENTS
IN_FLIGHT = 2
"""Requests a client keeps outstanding: 400 in flight across the stack at any moment."""
SYNC_REPLY = {"echo": "response", "ping": "pong", "subscribe": "subscribed"}


pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _fake_aws_credentials() -> None:
    """The running stack owns the AWS variables (its handlers call the embedded emulator)."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    config = stack_config(tmp_path_factory.mktemp("load"), sqs_concurrency=4)
    with BackgroundStack(config) as running:
        yield running


def workload(client_index: int) -> list[tuple[str, str, dict[str, Any]]]:
    """Per 25 requests: 2 asynchronous reports, 2 subscribes, the rest ping and echo."""
    requests = []
    for number in range(REQUESTS_PER_CLIENT):
        request_id = f"c{client_index}-r{number}"
        slot = number % 25
        if slot in (7, 19):
            requests.append((request_id, "generate_report", {"steps": 1, "title": request_id}))
        elif slot in (3, 15):
            requests.append((request_id, "subscribe", {"topic": f"load/{client_index % 7}"}))
        elif slot % 2:
            requests.append((request_id, "ping", {}))
        else:
            requests.append((request_id, "echo", {"client": client_index, "n": number}))
    return requests


def settled(client: RawClient, requests: list[tuple[str, str, dict[str, Any]]]) -> bool:
    """Every request has its final answer, or something already went wrong."""
    if any(f.get("type", "error") == "error" for f in client.frames):
        return True
    seen = Counter((f.get("request_id"), f.get("type")) for f in client.frames)
    for request_id, action, _ in requests:
        wanted = "complete" if action == "generate_report" else SYNC_REPLY[action]
        if not seen[(request_id, wanted)]:
            return False
    return True


def unanswered(client: RawClient, requests: list[tuple[str, str, dict[str, Any]]]) -> list[Any]:
    """What each request still lacks, with what it did get, for a readable failure."""
    missing = []
    for request_id, action, _ in requests:
        got = [f.get("type", f) for f in client.frames if f.get("request_id") == request_id]
        wanted = "complete" if action == "generate_report" else SYNC_REPLY[action]
        if wanted not in got:
            missing.append((request_id, action, got))
    return missing


async def run_client(stack: LocalStack, index: int, token: str, gate: asyncio.Semaphore) -> Any:
    requests = workload(index)
    async with gate:
        client = await open_client(stack, token, f"client-{index}")
        try:
            for sent, (request_id, action, payload) in enumerate(requests):
                if sent >= IN_FLIGHT:
                    oldest = requests[sent - IN_FLIGHT]
                    try:
                        await client.wait_for(lambda o=oldest: settled(client, [o]), "a slot")
                    except AssertionError as error:
                        raise AssertionError(f"{error}: {unanswered(client, [oldest])}") from None
                await client.send(action, payload, id=request_id)
            try:
                await client.wait_for(lambda: settled(client, requests), "every answer")
            except AssertionError as error:
                raise AssertionError(
                    f"{error}; unanswered: {unanswered(client, requests)}"
                ) from None
            # A marker sent after everything was answered: frames duplicated by a retry
            # would most likely have arrived by the time its reply does.
            await client.send("ping", id=f"c{index}-last")
            await client.reply(f"c{index}-last")
        finally:
            await client.close()
    return index, client, requests


async def test_every_request_of_every_client_is_answered_exactly_once(stack: LocalStack) -> None:
    """One reply per synchronous request; one acknowledgment and one completion per job."""
    gate = asyncio.Semaphore(OPEN_AT_ONCE)
    tokens = [stack.token(f"load-{i % 20}", f"load-tenant-{i % 3}") for i in range(CLIENTS)]
    results = await asyncio.gather(
        *(run_client(stack, index, tokens[index], gate) for index in range(CLIENTS))
    )

    total = 0
    for index, client, requests in results:
        frames = Counter((f.get("request_id"), f.get("type")) for f in client.frames)
        gateway_messages = [f for f in client.frames if "type" not in f]
        assert not gateway_messages, (client.name, gateway_messages[:3])
        assert not [f for f in client.frames if f.get("type") == "error"], client.name
        for request_id, action, _payload in requests:
            total += 1
            if action == "generate_report":
                assert frames[(request_id, "acknowledgment")] == 1, (client.name, request_id)
                assert frames[(request_id, "complete")] == 1, (client.name, request_id)
            else:
                assert frames[(request_id, SYNC_REPLY[action])] == 1, (client.name, request_id)
        known = {request_id for request_id, _, _ in requests} | {f"c{index}-last"}
        strays = {f.get("request_id") for f in client.frames} - known - {None}
        assert not strays, (client.name, strays)  # nothing meant for another socket
        echoes = [f for f in client.frames if f["type"] == "response"]
        assert all(f["result"]["client"] == index for f in echoes)
    assert total == CLIENTS * REQUESTS_PER_CLIENT
