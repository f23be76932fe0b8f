"""Raw `websockets` clients that drive both the local stack and the plain baselines.

The same client code talks to both sides, speaking Streamer's documented frames as plain JSON,
so any difference in a figure comes from the server. Keep-alive pings are off on the client:
they would add traffic unrelated to what is measured, and both servers get the same treatment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

OPEN_TIMEOUT_S = 60.0
REPLY_TIMEOUT_S = 30.0


def now_ns() -> int:
    """CLOCK_MONOTONIC is system-wide on Linux, so server and client timestamps compare."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


async def open_connection(url: str, token: str | None = None) -> ClientConnection:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return await connect(
        url,
        additional_headers=headers,
        open_timeout=OPEN_TIMEOUT_S,
        ping_interval=None,
        close_timeout=2,
        max_size=None,
    )


async def open_many(
    url: str, count: int, token: str | None = None, concurrency: int = 100
) -> tuple[list[ClientConnection], float]:
    """Open `count` connections with at most `concurrency` handshakes in flight.

    Returns the connections and the wall time it took; a refused or failed handshake raises,
    because a benchmark with fewer connections than asked for would report the wrong thing.
    """
    gate = asyncio.Semaphore(concurrency)

    async def one() -> ClientConnection:
        async with gate:
            return await open_connection(url, token)

    started = time.perf_counter()
    connections = await asyncio.gather(*(one() for _ in range(count)))
    return list(connections), time.perf_counter() - started


async def close_all(connections: Iterable[ClientConnection]) -> None:
    """Close without waiting on each close handshake: teardown is not what is measured."""
    for ws in connections:
        ws.transport.abort()
    await asyncio.sleep(0)


async def request(ws: ClientConnection, frame: dict[str, Any], expect: str) -> dict[str, Any]:
    """Send one frame and wait for the reply of type `expect` to it."""
    await ws.send(json.dumps(frame, separators=(",", ":")))
    while True:
        reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), REPLY_TIMEOUT_S))
        if reply.get("type") == "error":
            raise RuntimeError(f"server answered an error: {reply}")
        if reply.get("type") == expect:
            return reply


async def round_trips(ws: ClientConnection, count: int, *, streamer: bool) -> list[float]:
    """Sequential round trips of a small echo frame, in milliseconds each."""
    samples = []
    for index in range(count):
        frame = json.dumps(
            {"action": "echo", "id": f"rt-{index}", "payload": {"text": "hello"}},
            separators=(",", ":"),
        )
        started = time.perf_counter()
        await ws.send(frame)
        reply = await asyncio.wait_for(ws.recv(), REPLY_TIMEOUT_S)
        samples.append((time.perf_counter() - started) * 1000)
        if streamer and '"type":"response"' not in str(reply):
            raise RuntimeError(f"echo answered {reply!r}")
    return samples


async def subscribe_all(connections: Sequence[ClientConnection], topic: str) -> None:
    async def one(index: int, ws: ClientConnection) -> None:
        frame = {"action": "subscribe", "id": f"sub-{index}", "payload": {"topic": topic}}
        await request(ws, frame, "subscribed")

    gate = asyncio.Semaphore(50)

    async def gated(index: int, ws: ClientConnection) -> None:
        async with gate:
            await one(index, ws)

    await asyncio.gather(*(gated(i, ws) for i, ws in enumerate(connections)))


async def receive_event(ws: ClientConnection, marker: str) -> int:
    """Monotonic time at which the event frame carrying `marker` arrived."""
    while True:
        message = await ws.recv()
        if marker in str(message):
            return now_ns()


class Receivers:
    """Every connection waiting for one event; started before the event is published."""

    def __init__(self, connections: Sequence[ClientConnection], marker: str) -> None:
        self.tasks = [asyncio.ensure_future(receive_event(ws, marker)) for ws in connections]

    async def arrivals(self, *, wait_s: float) -> list[int]:
        try:
            return list(await asyncio.wait_for(asyncio.gather(*self.tasks), wait_s))
        finally:
            for task in self.tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*self.tasks, return_exceptions=True)
