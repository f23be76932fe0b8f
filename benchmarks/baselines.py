"""The plain `websockets` server every local-stack figure is compared with.

This is what a user would write instead of Streamer on one machine: no auth, no routing, no
storage. One server does all three baselines so they share one code path: it echoes every
message (round trip), sends one frame to every open connection on the `broadcast` command
(fan-out), and simply holds connections (memory per connection). Run it as
`python -m benchmarks.baselines`; it speaks the channel in `benchmarks.control`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.server import ServerConnection, broadcast, serve

from benchmarks.control import serve as serve_commands


async def _echo(connection: ServerConnection) -> None:
    async for message in connection:
        await connection.send(message)


def event_frame(topic: str, sent_ns: int) -> str:
    """A frame shaped and sized like Streamer's `event` frame, so both sides move similar bytes."""
    return json.dumps(
        {
            "type": "event",
            "topic": topic,
            "data": {"sent_ns": sent_ns, "text": "benchmark event"},
            "id": "01JBENCHMARKEVENT000000000",
            "published_at": int(time.time() * 1000),
        },
        separators=(",", ":"),
    )


async def main() -> None:
    server_box: list[Any] = []

    @contextlib.asynccontextmanager
    async def start() -> AsyncIterator[dict[str, Any]]:
        # No permessage-deflate, like the local gateway (API Gateway offers none): both
        # sides then do the same protocol work per message.
        async with serve(_echo, "127.0.0.1", 0, compression=None) as server:
            server_box.append(server)
            port = server.sockets[0].getsockname()[1]
            yield {"ws_url": f"ws://127.0.0.1:{port}/"}

    async def do_broadcast(request: dict[str, Any]) -> dict[str, Any]:
        connections = list(server_box[0].connections)
        started = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        broadcast(connections, event_frame(request.get("topic", "bench"), started))
        return {"started_ns": started, "connections": len(connections)}

    async def count(_: dict[str, Any]) -> dict[str, Any]:
        return {"connections": len(server_box[0].connections)}

    await serve_commands(start, {"broadcast": do_broadcast, "count": count})


if __name__ == "__main__":
    asyncio.run(main())
