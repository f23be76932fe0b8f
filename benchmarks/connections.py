"""Concurrent authenticated connections held by one local gateway process, and their cost.

Connections are opened in equal batches from this process while the server runs alone in a
fresh child, so its resident memory (read from /proc) contains no client state. Every batch
gives one sample of the connect rate and of the memory added per connection; the median over
batches smooths out allocator steps. The plain baseline is a `websockets` server holding as many
unauthenticated connections. The gateway's figure includes everything one `streamer dev` process
keeps per connection: the socket, the gateway's bookkeeping and moto's connection item.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from websockets.protocol import State

from benchmarks import clients
from benchmarks.control import ServerProcess, raise_fd_limit
from benchmarks.harness import Result, RunConfig, Target
from benchmarks.stack_server import require_local_stack, stack_process

NAME = "connections"
SETTLE_S = 1.0


async def _ramp(
    server: ServerProcess, url: str, token: str | None, total: int, batch: int
) -> dict[str, Any]:
    connections: list[Any] = []
    rates: list[float] = []
    kib_per_connection: list[float] = []
    await asyncio.sleep(SETTLE_S)
    start_rss = previous = server.rss_kib()
    try:
        while len(connections) < total:
            opened, elapsed = await clients.open_many(
                url, min(batch, total - len(connections)), token
            )
            connections += opened
            rates.append(len(opened) / elapsed)
            # Keeps this process's garbage collector from rescanning every earlier client on
            # each batch, which would slow the clients, not the server, as the count grows.
            gc.freeze()
            await asyncio.sleep(SETTLE_S)
            rss = server.rss_kib()
            kib_per_connection.append((rss - previous) / len(opened))
            previous = rss
        open_clients = sum(ws.state is State.OPEN for ws in connections)
        served = (await server.call("count"))["connections"]
        return {
            "held": min(open_clients, served),
            "rates": rates,
            "kib_per_connection": kib_per_connection,
            "overall_kib_per_connection": (previous - start_rss) / len(connections),
            "start_rss_mib": start_rss / 1024,
            "end_rss_mib": previous / 1024,
        }
    finally:
        await clients.close_all(connections)
        gc.unfreeze()


async def _measure(config: RunConfig) -> list[Result]:
    raise_fd_limit()
    total, batch = (600, 200) if config.quick else (10_000, 1000)
    async with ServerProcess("benchmarks.baselines") as plain:
        base = await _ramp(plain, plain.info["ws_url"], None, total, batch)
    async with stack_process(graceful=False) as stack:
        ours = await _ramp(stack, stack.info["ws_url"], stack.info["token"], total, batch)
    extra = {
        "local_stack": {k: v for k, v in ours.items() if k not in {"rates", "kib_per_connection"}},
        "plain": {k: v for k, v in base.items() if k not in {"rates", "kib_per_connection"}},
    }
    return [
        Result(
            NAME,
            f"connections held of {total:,} opened",
            "conns",
            [float(ours["held"])],
            baseline_name="plain",
            baseline_samples=[float(base["held"])],
            target=Target(total, on="value", higher_is_better=True),
            note="one ramp per run",
        ),
        Result(
            NAME,
            f"connect rate ({batch:,} per batch)",
            "conns/s",
            ours["rates"],
            baseline_name="plain",
            baseline_samples=base["rates"],
        ),
        Result(
            NAME,
            "server memory per connection",
            "KiB",
            ours["kib_per_connection"],
            baseline_name="plain",
            baseline_samples=base["kib_per_connection"],
            target=Target(2.0),
            extra=extra,
        ),
    ]


def run(config: RunConfig) -> list[Result]:
    require_local_stack()
    return asyncio.run(_measure(config))
