"""Fan-out: one published event until every subscriber has it, against a plain broadcast.

Streamer's path is the server-side `publish()`: query the topic's subscribers in DynamoDB (moto),
then the whole batch handed to the local gateway's loop, which writes the frame to every socket
(`streamer dev`'s default transport; on AWS it is one management-API POST per connection).
The plain baseline is `websockets.broadcast` to as many open connections, the least a
single-process server can do. The clock starts in the server process just before the publish
call (or the broadcast) and stops when the last client has the frame; both read the system-wide
CLOCK_MONOTONIC. All subscribers are clients of one separate process, identical for both sides.
Both servers are up together and take turns run by run, so load changes hit both alike; the
first run of each is a warm-up. The subscriber query is also timed alone after each run (kept
in the JSON as `subscriber_query_ms`) to split the figure into lookup and delivery.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks import clients
from benchmarks.control import ServerProcess, raise_fd_limit
from benchmarks.harness import Result, RunConfig, Target
from benchmarks.stack_server import TENANT, collector_window, require_local_stack, stack_process

NAME = "fanout"
TOPIC = "bench.fanout"
SIZES = (100, 1000)
QUICK_SIZES = (100,)
ARRIVAL_TIMEOUT_S = 60.0

Publish = Callable[[str], Awaitable[dict[str, Any]]]


async def _deliver_once(connections: list[Any], publish: Publish) -> tuple[float, float]:
    """Ms until the last client has the event, and until the median client has it."""
    marker = f"fanout-{time.time_ns()}"
    receivers = clients.Receivers(connections, marker)
    await asyncio.sleep(0)
    started = (await publish(marker))["started_ns"]
    arrivals = sorted(await receivers.arrivals(wait_s=ARRIVAL_TIMEOUT_S))
    return (arrivals[-1] - started) / 1e6, (arrivals[len(arrivals) // 2] - started) / 1e6


async def _measure_size(size: int, repeat: int) -> Result:
    series: dict[str, list[float]] = {
        "plain": [],
        "plain_median": [],
        "stack": [],
        "stack_median": [],
        "query": [],
    }
    async with ServerProcess("benchmarks.baselines") as plain, stack_process() as stack:
        plain_clients, _ = await clients.open_many(plain.info["ws_url"], size)
        stack_clients, _ = await clients.open_many(stack.info["ws_url"], size, stack.info["token"])
        try:
            await clients.subscribe_all(stack_clients, TOPIC)

            async def broadcast(marker: str) -> dict[str, Any]:
                return await plain.call("broadcast", topic=marker)

            async def publish(marker: str) -> dict[str, Any]:
                reply = await stack.call("publish", tenant=TENANT, topic=TOPIC, marker=marker)
                if reply["delivered"] != size:
                    raise RuntimeError(f"publish reached {reply['delivered']} of {size}")
                return reply

            collector_before = await stack.call("collector")
            for rep in range(repeat + 1):
                plain_last, plain_median = await _deliver_once(plain_clients, broadcast)
                stack_last, stack_median = await _deliver_once(stack_clients, publish)
                query = await stack.call("query_subscribers", tenant=TENANT, topic=TOPIC)
                if query["subscribers"] != size:
                    raise RuntimeError(f"{query['subscribers']} subscribers, expected {size}")
                if rep == 0:
                    continue
                series["plain"].append(plain_last)
                series["plain_median"].append(plain_median)
                series["stack"].append(stack_last)
                series["stack_median"].append(stack_median)
                series["query"].append(query["ms"])
            collector_after = await stack.call("collector")
        finally:
            await clients.close_all(plain_clients + stack_clients)
    return Result(
        NAME,
        f"event to all {size:,} subscribers",
        "ms",
        series["stack"],
        baseline_name="plain broadcast",
        baseline_samples=series["plain"],
        target=Target(5.0),
        extra={
            "median_client_ms": series["stack_median"],
            "plain_median_client_ms": series["plain_median"],
            "subscriber_query_ms": series["query"],
            # Per generation (young to old), in the stack process over all runs.
            "collector": collector_window(collector_before, collector_after),
        },
    )


async def _measure(config: RunConfig) -> list[Result]:
    raise_fd_limit()
    repeat = config.repeats(full=5, quick=3)
    return [await _measure_size(size, repeat) for size in (QUICK_SIZES if config.quick else SIZES)]


def run(config: RunConfig) -> list[Result]:
    require_local_stack()
    return asyncio.run(_measure(config))
