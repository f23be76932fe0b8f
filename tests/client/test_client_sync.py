"""The blocking facade: same behaviour as the asyncio client, callable from plain threads.

The scripted server lives on the test's event loop, so each blocking call runs in a worker
thread (``asyncio.to_thread``), as it would in a threaded web app.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

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
