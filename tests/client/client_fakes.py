"""A scripted WebSocket server and server-frame builders for the client's tests.

Each test starts a real ``websockets`` server on 127.0.0.1 and scripts what it answers, so the
client is exercised over real sockets, real handshakes and real disconnects, with every edge case
(reordered frames, duplicates, drops, garbage) under the test's control.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sized
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

# Hang guard only: tests assert on order and counts, never on how long anything took.
WAIT = 10.0

# Short intervals keep reconnect tests fast; heartbeats are off unless a test turns them on.
FAST: dict[str, Any] = {
    "backoff_initial": 0.01,
    "backoff_max": 0.05,
    "heartbeat_interval": None,
    "open_timeout": 5.0,
}

Frame = dict[str, Any]
Script = Callable[["FakeConnection"], Coroutine[Any, Any, None]]


class FakeConnection:
    """One accepted socket, seen from the server side."""

    def __init__(self, server: FakeServer, ws: ServerConnection, index: int) -> None:
        self.server = server
        self.ws = ws
        self.index = index
        self.headers: Headers = ws.request.headers if ws.request else Headers()
        self.path: str = ws.request.path if ws.request else ""
        self.inbox: asyncio.Queue[Frame] = asyncio.Queue()
        self.closed = asyncio.Event()

    async def recv(self, within: float = WAIT) -> Frame:
        """The next client frame other than a heartbeat ping."""
        return await asyncio.wait_for(self.inbox.get(), within)

    async def recv_action(self, action: str, within: float = WAIT) -> Frame:
        """Skip frames until one with ``action`` arrives."""
        while True:
            frame = await self.recv(within)
            if frame.get("action") == action:
                return frame

    async def send(self, frame: Frame | str | bytes) -> None:
        await self.ws.send(json.dumps(frame) if isinstance(frame, dict) else frame)

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.wait_for(self.closed.wait(), WAIT)

    async def wait_closed(self) -> None:
        await asyncio.wait_for(self.closed.wait(), WAIT)


@dataclass
class FakeServer:
    """Accepts connections and runs ``script`` on each; everything received is recorded."""

    script: Script | None = None
    auto_pong: bool = True
    ping_answer: Callable[[str], Frame] = field(default=lambda request_id: pong(request_id))
    reject_with: int | None = None
    url: str = ""
    connections: list[FakeConnection] = field(default_factory=list)
    handshakes: list[Headers] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    received: list[Frame] = field(default_factory=list)
    pings: list[Frame] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    _connected: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def connection(self, index: int, within: float = WAIT) -> FakeConnection:
        """Wait for the ``index``-th connection (0-based) to be accepted."""

        async def ready() -> None:
            async with self._connected:
                await self._connected.wait_for(lambda: len(self.connections) > index)

        await asyncio.wait_for(ready(), within)
        return self.connections[index]

    def actions(self, action: str) -> list[Frame]:
        return [frame for frame in self.received if frame.get("action") == action]

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.handshakes.append(request.headers)
        self.paths.append(request.path)
        if self.reject_with is not None:
            status = HTTPStatus(self.reject_with)
            return connection.respond(status, f"{status.phrase}\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        conn = FakeConnection(self, ws, len(self.connections))
        reader = asyncio.create_task(self._read(conn))
        async with self._connected:
            self.connections.append(conn)
            self._connected.notify_all()
        script = asyncio.create_task(self.script(conn)) if self.script is not None else None
        try:
            await reader
        finally:
            conn.closed.set()
            # The socket is gone: whatever the script still waits for will never come.
            if script is not None:
                if not script.done():
                    script.cancel()
                await asyncio.gather(script, return_exceptions=True)
                if not script.cancelled() and script.exception() is not None:
                    exc = script.exception()
                    if not isinstance(exc, ConnectionClosed):
                        self.errors.append(exc)  # type: ignore[arg-type]

    async def _read(self, conn: FakeConnection) -> None:
        try:
            async for message in conn.ws:
                frame = json.loads(message)
                self.received.append(frame)
                if frame.get("action") == "ping" and self.auto_pong:
                    self.pings.append(frame)
                    await conn.send(self.ping_answer(frame["id"]))
                    continue
                if frame.get("action") == "ping":
                    self.pings.append(frame)
                    continue
                conn.inbox.put_nowait(frame)
        except ConnectionClosed:
            pass
        finally:
            conn.closed.set()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FakeServer]:
        server: Server
        async with serve(
            self._handle, "127.0.0.1", 0, process_request=self._process_request
        ) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            self.url = f"ws://127.0.0.1:{port}/ws"
            yield self


# ------------------------------------------------------------------ server frames


def now_ms() -> int:
    return int(time.time() * 1000)


def pong(request_id: str) -> Frame:
    return {"type": "pong", "request_id": request_id, "server_time": now_ms()}


def response(request_id: str, result: Any = None) -> Frame:
    return {"type": "response", "request_id": request_id, "result": result}


def ack(request_id: str, action: str = "work", status: str = "QUEUED") -> Frame:
    return {"type": "acknowledgment", "request_id": request_id, "action": action, "status": status}


def progress(request_id: str, seq: int, percentage: float, message: str | None = None) -> Frame:
    return {
        "type": "progress",
        "request_id": request_id,
        "seq": seq,
        "percentage": percentage,
        "message": message,
        "metadata": {},
    }


def complete(request_id: str, result: Any = None) -> Frame:
    return {"type": "complete", "request_id": request_id, "result": result}


def error(
    request_id: str | None, code: str, message: str = "refused", details: Frame | None = None
) -> Frame:
    return {
        "type": "error",
        "request_id": request_id,
        "code": code,
        "message": message,
        "details": details or {},
    }


def status(
    request_id: str,
    job_id: str,
    state: str,
    *,
    seq: int | None = None,
    percentage: float = 0.0,
    result: Any = None,
    error_code: str | None = None,
) -> Frame:
    snapshot: Frame = {
        "request_id": job_id,
        "action": "work",
        "status": state,
        "result": result,
        "created_at": now_ms(),
        "updated_at": now_ms(),
    }
    if seq is not None:
        snapshot["progress"] = {
            "percentage": percentage,
            "message": f"step {seq}",
            "metadata": {},
            "seq": seq,
        }
    if error_code is not None:
        snapshot["error"] = {"code": error_code, "message": "it ended", "details": {}}
    return {"type": "status", "request_id": request_id, "snapshot": snapshot}


def subscribed(request_id: str, topic: str) -> Frame:
    return {"type": "subscribed", "request_id": request_id, "topic": topic}


def unsubscribed(request_id: str, topic: str) -> Frame:
    return {"type": "unsubscribed", "request_id": request_id, "topic": topic}


def event(topic: str, data: Any, event_id: str = "E1") -> Frame:
    return {"type": "event", "topic": topic, "data": data, "id": event_id, "published_at": now_ms()}


async def answer_basics(conn: FakeConnection) -> None:
    """A well-behaved server for tests that do not care about the details.

    Sync actions echo their payload; ``subscribe``/``unsubscribe`` are confirmed; ``status`` of
    anything is NOT_FOUND.
    """
    while True:
        frame = await conn.recv(within=3600)
        action, frame_id = frame["action"], frame["id"]
        if action == "subscribe":
            await conn.send(subscribed(frame_id, frame["payload"]["topic"]))
        elif action == "unsubscribe":
            await conn.send(unsubscribed(frame_id, frame["payload"]["topic"]))
        elif action in ("status", "cancel"):
            await conn.send(error(frame_id, "NOT_FOUND", "no such request"))
        else:
            await conn.send(response(frame_id, frame["payload"]))


async def until(predicate: Callable[[], bool], within: float = WAIT) -> None:
    """Wait for a condition the test cannot await directly (polling, with a hang guard)."""

    async def poll() -> None:
        # The conditions are plain attributes of the client or server: there is no event to await.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), within)


async def until_at_least(items: Sized, count: int) -> None:
    """Wait until ``items`` (a list the server or a fake fills) holds ``count`` entries."""
    await until(lambda: len(items) >= count)
