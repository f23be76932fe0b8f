"""Stopping the stack: every client is told 1001 (going away) and every `$disconnect` runs."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import pytest
from e2e_support import connection_store, eventually, open_ws, receive_for, send, stack_config
from streamer_infra.local import BackgroundStack, DevKeys
from streamer_infra.local._collector import SERVER_THRESHOLDS
from websockets.exceptions import ConnectionClosed


async def test_stop_closes_every_client_with_1001_and_runs_their_disconnects(
    e2e_keys: DevKeys, tmp_path: Path
) -> None:
    background = BackgroundStack(stack_config(e2e_keys, tmp_path))
    stack = await asyncio.to_thread(background.start)
    try:
        clients = [await open_ws(stack, stack.token(f"user-{i}", "closing")) for i in range(5)]
        for index, ws in enumerate(clients):
            await send(ws, "subscribe", {"topic": "t"}, id=f"s{index}")
            await receive_for(ws, f"s{index}")
        store = connection_store(stack)
        assert len(store.list_by_tenant("closing").items) == 5
        gateway = stack.gateway
    finally:
        await asyncio.to_thread(background.stop)

    for ws in clients:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1001
    assert gateway.counters.disconnected == 5
    await eventually(lambda: store.list_by_tenant("closing").items == [], "rows deleted")


def test_a_second_stack_in_the_same_process_is_refused(e2e_keys: DevKeys, tmp_path: Path) -> None:
    from streamer_infra.local import StackAlreadyRunningError

    with BackgroundStack(stack_config(e2e_keys, tmp_path)) as stack:
        assert stack.ws_url.startswith("ws://127.0.0.1:")
        with pytest.raises(StackAlreadyRunningError):
            BackgroundStack(stack_config(e2e_keys, tmp_path)).start()


async def test_server_collector_thresholds_hold_while_the_stack_runs_and_are_restored(
    e2e_keys: DevKeys, tmp_path: Path
) -> None:
    own = gc.get_threshold()
    background = BackgroundStack(stack_config(e2e_keys, tmp_path, server_gc=True))
    stack = await asyncio.to_thread(background.start)
    try:
        assert gc.get_threshold() == SERVER_THRESHOLDS
        ws = await open_ws(stack, stack.token("gc-user", "gc"))
        await send(ws, "ping", id="p1")
        assert (await receive_for(ws, "p1"))["type"] == "pong"
        await ws.close()
    finally:
        await asyncio.to_thread(background.stop)
    assert gc.get_threshold() == own
