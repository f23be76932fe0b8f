"""The blocking facade: same behaviour as the asyncio client, callable from plain threads.

The scripted server lives on the test's event loop, so each blocking call runs in a worker
thread (``asyncio.to_thread``), as it would in a threaded web app.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from client_fakes import (
    FAST,
    WAIT,
    FakeConnection,
    FakeServer,
    ack,
    answer_basics,
    complete,
    error,
    event,
    progress,
    subscribed,
)
from streamer_client import (
    ClientClosed,
    ConnectionFailed,
    ConnectionState,
    NotFoundError,
    ProgressFrame,
    RequestStatus,
    RequestTimeout,
)
from streamer_client.sync import StreamerClient

T = TypeVar("T")


async def _in_daemon_thread(function: Callable[[], T]) -> T:
    """Run blocking code in a daemon thread, so a deadlock fails the test instead of hanging
    the interpreter at exit the way a stuck ``asyncio.to_thread`` worker would."""
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[T] = loop.create_future()

    def settle(future: asyncio.Future[T], value: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)

    def target() -> None:
        try:
            value = function()
        except BaseException as exc:
            loop.call_soon_threadsafe(settle, outcome, None, exc)
        else:
            loop.call_soon_threadsafe(settle, outcome, value, None)

    threading.Thread(target=target, daemon=True).start()
    return await asyncio.wait_for(outcome, WAIT)


def _client(server: FakeServer, **options: Any) -> StreamerClient:
    return StreamerClient(server.url, **{**FAST, "token": "tok-1", **options})


async def _job_script(conn: FakeConnection) -> None:
    while True:
        frame = await conn.recv(within=3600)
        if frame["action"] != "work":
            continue
        rid = frame["id"]
        await conn.send(ack(rid))
        for seq in (1, 2):
            await conn.send(progress(rid, seq, seq * 50.0, f"step {seq}"))
        await conn.send(complete(rid, {"done": True}))


async def test_request_blocks_until_the_result(server: FakeServer) -> None:
    server.script = answer_basics

    def run() -> object:
        with _client(server) as client:
            assert client.state is ConnectionState.CONNECTED
            return client.request("echo", {"text": "hi"})

    assert await asyncio.wait_for(asyncio.to_thread(run), WAIT) == {"text": "hi"}


async def test_progress_callback_runs_in_the_calling_thread(server: FakeServer) -> None:
    server.script = _job_script
    seen: list[tuple[int, str]] = []

    def run() -> object:
        caller = threading.current_thread().name

        def on_progress(update: ProgressFrame) -> None:
            seen.append((update.seq, threading.current_thread().name))
            assert threading.current_thread().name == caller

        with _client(server) as client:
            return client.request("work", on_progress=on_progress)

    assert await asyncio.wait_for(asyncio.to_thread(run), WAIT) == {"done": True}
    assert [seq for seq, _ in seen] == [1, 2]


async def test_submit_gives_a_blocking_job(server: FakeServer) -> None:
    server.script = _job_script

    def run() -> tuple[list[int], object, RequestStatus]:
        with _client(server) as client:
            job = client.submit("work")
            seqs = [update.seq for update in job.progress()]
            result = job.result(timeout=WAIT)
            return seqs, result, job.status

    seqs, result, final = await asyncio.wait_for(asyncio.to_thread(run), WAIT)
    assert seqs == [1, 2]
    assert result == {"done": True}
    assert final is RequestStatus.COMPLETED


async def test_remote_errors_and_timeouts_raise_in_the_caller(server: FakeServer) -> None:
    async def script(conn: FakeConnection) -> None:
        frame = await conn.recv()
        await conn.send(error(frame["id"], "NOT_FOUND", "no such action"))
        await conn.recv()  # left unanswered

    server.script = script

    def run() -> None:
        with _client(server) as client:
            with pytest.raises(NotFoundError, match="no such action"):
                client.request("missing")
            with pytest.raises(RequestTimeout):
                client.request("slow", timeout=0.05)

    await asyncio.wait_for(asyncio.to_thread(run), WAIT)


async def test_subscribe_iterates_events(server: FakeServer) -> None:
    async def script(conn: FakeConnection) -> None:
        frame = await conn.recv_action("subscribe")
        await conn.send(subscribed(frame["id"], "news"))
        await conn.send(event("news", 1, "E1"))
        await conn.send(event("news", 2, "E2"))
        await answer_basics(conn)

    server.script = script

    def run() -> list[object]:
        with _client(server) as client, client.subscribe("news") as events:
            received: list[object] = [events.receive(timeout=WAIT).data, next(events).data]
            with pytest.raises(RequestTimeout):
                events.receive(timeout=0.01)
            return received

    assert await asyncio.wait_for(asyncio.to_thread(run), WAIT) == [1, 2]


async def test_unusable_client_raises_clear_errors(server: FakeServer) -> None:
    def run() -> None:
        client = _client(server)
        with pytest.raises(ClientClosed):
            client.request("echo")
        client.close()
        unreachable = StreamerClient("ws://127.0.0.1:9/", open_timeout=2.0)
        with pytest.raises(ConnectionFailed):
            unreachable.connect()

    await asyncio.wait_for(asyncio.to_thread(run), WAIT)


async def test_blocking_call_from_the_client_thread_raises_instead_of_deadlocking(
    server: FakeServer,
) -> None:
    async def script(conn: FakeConnection) -> None:
        if conn.index == 0:
            await conn.close()
            return
        await answer_basics(conn)

    server.script = script

    def run() -> list[type[BaseException]]:
        outcomes: list[type[BaseException]] = []
        reconnected = threading.Event()
        client = _client(server)

        states: list[ConnectionState] = []

        def on_state(state: ConnectionState) -> None:
            states.append(state)
            # Back from the reconnect, in the client's own thread, with the client open.
            if state is ConnectionState.CONNECTED and ConnectionState.RECONNECTING in states:
                try:
                    client.request("echo")
                except BaseException as exc:
                    outcomes.append(type(exc))
                reconnected.set()

        client.on_state_change(on_state)
        with client:
            assert reconnected.wait(WAIT)
            # The client still works from an ordinary thread.
            assert client.request("echo", {"n": 1}) == {"n": 1}
        return outcomes

    assert await _in_daemon_thread(run) == [RuntimeError]


async def test_calls_made_while_the_client_closes_raise_client_closed(
    server: FakeServer,
) -> None:
    async def script(conn: FakeConnection) -> None:
        frame = await conn.recv_action("work")
        await conn.send(ack(frame["id"]))  # and never finishes
        await answer_basics(conn)

    server.script = script

    def run() -> dict[str, object]:
        seen: dict[str, object] = {}
        client = _client(server)
        client.connect()
        job = client.submit("work")

        def call_from_another_thread() -> None:
            try:
                seen["result"] = job.result(timeout=WAIT)
            except BaseException as exc:
                seen["error"] = type(exc)

        def on_state(state: ConnectionState) -> None:
            if state is ConnectionState.CLOSED:
                # The loop thread is busy closing; another thread's call must not wait for it.
                worker = threading.Thread(target=call_from_another_thread, daemon=True)
                worker.start()
                worker.join(WAIT / 2)
                seen["answered while closing"] = not worker.is_alive()

        client.on_state_change(on_state)
        client.close()
        with pytest.raises(ClientClosed):
            job.cancel()
        with pytest.raises(ClientClosed):
            client.request("echo")
        client.close()  # closing twice is harmless
        return seen

    seen = await _in_daemon_thread(run)
    assert seen == {"answered while closing": True, "error": ClientClosed}


async def test_blocking_client_offers_states_and_closed(server: FakeServer) -> None:
    server.script = answer_basics

    def run() -> tuple[bool, bool, ConnectionState, bool]:
        client = _client(server)
        before = client.closed
        with client:
            states = client.states()
            current = next(states)
            during = client.closed
        return before, during, current, client.closed

    before, during, current, after = await _in_daemon_thread(run)
    assert (before, during, current, after) == (False, False, ConnectionState.CONNECTED, True)


async def test_subscription_iteration_ends_when_the_client_closes(server: FakeServer) -> None:
    server.script = answer_basics

    def run() -> list[object]:
        client = _client(server)
        client.connect()
        with client.subscribe("news") as events:
            # Closing from another thread, before or during the iteration: either way it ends.
            closer = threading.Thread(target=client.close)
            closer.start()
            received: list[object] = [item.data for item in events]
            closer.join()
        return received

    assert await _in_daemon_thread(run) == []
