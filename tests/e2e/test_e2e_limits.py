"""API Gateway's limits, shortened: message size and idle timeout."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from e2e_support import (
    connection_ids,
    eventually,
    open_ws,
    receive,
    receive_for,
    send,
    stack_config,
)
from streamer_infra.local import BackgroundStack, DevKeys, GatewayLimits, LocalStack
from websockets.exceptions import ConnectionClosed

IDLE_SECONDS = 1.0


@pytest.fixture(scope="module")
def idle_stack(e2e_keys: DevKeys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    limits = GatewayLimits(idle_timeout=IDLE_SECONDS, max_lifetime=120)
    with BackgroundStack(
        stack_config(e2e_keys, tmp_path_factory.mktemp("limits"), limits=limits)
    ) as stack:
        yield stack


async def test_oversize_frame_gets_an_error_then_close_1009(idle_stack: LocalStack) -> None:
    ws = await open_ws(idle_stack, idle_stack.token("big", "acme"))
    await ws.send(json.dumps({"action": "echo", "payload": {"blob": "x" * (128 * 1024)}}))
    error = await receive(ws)
    with pytest.raises(ConnectionClosed) as closed:
        await receive(ws)
    assert error["type"] == "error"
    assert error["code"] == "VALIDATION_ERROR"
    assert "131072" in error["message"]
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009
    await eventually(lambda: connection_ids(idle_stack, "acme", "big") == [], "$disconnect ran")


async def test_frame_just_under_the_limit_is_routed(idle_stack: LocalStack) -> None:
    async with await open_ws(idle_stack, idle_stack.token("near", "acme")) as ws:
        frame = json.dumps({"action": "echo", "id": "near", "payload": {"blob": ""}})
        padding = 128 * 1024 - len(frame)
        await ws.send(frame.replace('"blob": ""', '"blob": "' + "y" * padding + '"'))
        reply = await receive_for(ws, "near")
    # The request was routed; its answer is itself too big for one frame, said in an error.
    assert reply["type"] in ("response", "error")


async def test_idle_connection_is_closed_with_1001_and_cleaned_up(idle_stack: LocalStack) -> None:
    ws = await open_ws(idle_stack, idle_stack.token("sleepy", "acme"))
    with pytest.raises(ConnectionClosed) as closed:
        await receive(ws)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1001
    await eventually(lambda: connection_ids(idle_stack, "acme", "sleepy") == [], "$disconnect ran")
    assert idle_stack.gateway.counters.disconnect_reasons["Idle timeout"] >= 1


async def test_messages_keep_a_connection_alive(idle_stack: LocalStack) -> None:
    """Traffic resets the idle clock: round trips for two idle periods, never closed."""
    async with await open_ws(idle_stack, idle_stack.token("chatty", "acme")) as ws:
        until = time.monotonic() + 2 * IDLE_SECONDS
        index = 0
        while time.monotonic() < until:
            index += 1
            await send(ws, "ping", id=f"keep-{index}")
            assert (await receive_for(ws, f"keep-{index}"))["type"] == "pong"
