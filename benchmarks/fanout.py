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

A topic above the direct limit (1,000 subscribers by default) goes through the queue: the
publisher queues shards of 100, the local event source mapping hands them to the processor ten
to a batch, with the dev stack's concurrency (10), and the processor sends them. That path is
measured on 10,000 subscribers, each on its own socket to one local gateway (their
subscriptions written to the table directly: subscribing is not what is measured): with the
processor's pacing lifted (what the machinery costs here) and at the default pacing of 50
posts per second per invocation (what the rate bound costs: ten invocations at once make at
most 500 posts a second), against the same publish sent by the publisher itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
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
SHARDED_SIZE = 10_000
QUICK_SHARDED_SIZE = 1000
SHARDED_TIMEOUT_S = 120.0
MODES: dict[str, dict[str, str]] = {
    # Every subscriber from the publisher's process: the path below the direct limit.
    "direct": {"STREAMER_FANOUT_DIRECT_MAX": str(10**9)},
    "sharded, unpaced": {"STREAMER_FANOUT_SENDS_PER_SECOND": str(10**9)},
    "sharded, paced at 50/s per invocation": {},
}
"""Fan-out settings of each run, on top of the defaults (shards of 100 above 1,000)."""
QUICK_MODE_ENV = {"STREAMER_FANOUT_SHARD_SIZE": "10", "STREAMER_FANOUT_DIRECT_MAX": "100"}
"""--quick: 1,000 subscribers, cut as 10,000 are by default (a hundred shards)."""
FANOUT_VARIABLES = (
    "STREAMER_FANOUT_SHARD_SIZE",
    "STREAMER_FANOUT_DIRECT_MAX",
    "STREAMER_FANOUT_SENDS_PER_SECOND",
)

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


async def _measure_sharded(config: RunConfig) -> list[Result]:
    """Time to the last of 10,000 subscribers, per mode, on one set of connections."""
    size = QUICK_SHARDED_SIZE if config.quick else SHARDED_SIZE
    repeat = config.repeats(full=3, quick=1)
    base_env = QUICK_MODE_ENV if config.quick else {}
    series: dict[str, list[float]] = {mode: [] for mode in MODES}
    medians: dict[str, list[float]] = {mode: [] for mode in MODES}
    shards: dict[str, int] = {}
    async with ServerProcess("benchmarks.fanout", "serve", graceful=False) as stack:
        connections, opened_s = await clients.open_many(
            stack.info["ws_url"], size, stack.info["token"]
        )
        try:
            # Written straight to the table: ten thousand `subscribe` messages through one
            # process take longer than the gateway's idle timeout, and are not measured.
            reply = await stack.call("subscribe_all", topic=TOPIC, wait_s=SHARDED_TIMEOUT_S)
            if reply["subscribed"] != size:
                raise RuntimeError(f"{reply['subscribed']} subscribed, expected {size}")
            subscribed_s = reply["seconds"]
            for mode, env in MODES.items():
                await stack.call("configure", env={**base_env, **env})
                # The paced mode takes its time by design: one run, no warm-up.
                runs = 1 if mode.startswith("sharded, paced") else repeat + 1
                for run in range(runs):
                    marker = f"fanout-{mode}-{run}-{time.time_ns()}"
                    receivers = clients.Receivers(connections, marker)
                    await asyncio.sleep(0)
                    reply = await stack.call(
                        "publish",
                        tenant=TENANT,
                        topic=TOPIC,
                        marker=marker,
                        wait_s=SHARDED_TIMEOUT_S,
                    )
                    arrivals = sorted(await receivers.arrivals(wait_s=SHARDED_TIMEOUT_S))
                    shards[mode] = reply["shards"]
                    if runs > 1 and run == 0:
                        continue
                    series[mode].append((arrivals[-1] - reply["started_ns"]) / 1e9)
                    medians[mode].append((arrivals[len(arrivals) // 2] - reply["started_ns"]) / 1e9)
        finally:
            await clients.close_all(connections)
    results = []
    for mode in MODES:
        results.append(
            Result(
                NAME,
                f"event to all {size:,} subscribers, {mode}",
                "s",
                series[mode],
                note=f"{shards[mode]} shards" if shards[mode] else "no shards",
                extra={
                    "median_client_s": medians[mode],
                    "opened_s": opened_s,
                    "subscribed_s": subscribed_s,
                    "environment": {**base_env, **MODES[mode]},
                },
            )
        )
    return results


async def _measure(config: RunConfig) -> list[Result]:
    raise_fd_limit()
    repeat = config.repeats(full=5, quick=3)
    results = [
        await _measure_size(size, repeat) for size in (QUICK_SIZES if config.quick else SIZES)
    ]
    return results + await _measure_sharded(config)


async def _serve() -> None:
    """Child process: a local stack as `benchmarks.stack_server` runs it, whose fan-out
    settings the parent changes between runs (the processor reads them per invocation)."""
    from streamer_core.auth import generate_key_pair
    from streamer_handlers import publish
    from streamer_infra.local import DevKeys, LocalStack, LocalStackConfig

    from benchmarks.control import serve
    from benchmarks.stack_server import HANDLER_ENVIRONMENT, PERMISSIONS, USER

    os.environ.update(HANDLER_ENVIRONMENT)
    stacks: list[LocalStack] = []

    @contextlib.asynccontextmanager
    async def start() -> AsyncIterator[dict[str, Any]]:
        private_pem, public_pem = generate_key_pair("RS256")
        config = LocalStackConfig(
            port=0,
            env="bench",
            keys=DevKeys(public_pem, private_pem),
            environment=HANDLER_ENVIRONMENT,
            pin_cpu=True,  # as `streamer dev` does
            server_gc=True,  # likewise
        )
        async with LocalStack(config) as stack:
            stacks.append(stack)
            yield {"ws_url": stack.ws_url, "token": stack.token(USER, TENANT, PERMISSIONS)}

    async def subscribe_all(request: dict[str, Any]) -> dict[str, Any]:
        """Every open connection subscribed to the topic, as `subscribe` would store it."""
        stack = stacks[0]
        dynamodb = stack.aws_client("dynamodb")
        table = stack.resources.tables["subscriptions"]
        topic = request["topic"]
        now = time.time()
        items = [
            {
                "PutRequest": {
                    "Item": {
                        "connection_id": {"S": connection_id},
                        "topic": {"S": topic},
                        "tenant_id": {"S": TENANT},
                        "tenant_topic": {"S": f"{TENANT}#{topic}"},
                        "subscribed_at": {"N": str(int(now * 1000))},
                        "expires_at": {"N": str(int(now) + 7200)},
                    }
                }
            }
            for connection_id in list(stack.gateway.connections)
        ]

        def write() -> None:
            for start in range(0, len(items), 25):
                dynamodb.batch_write_item(RequestItems={table: items[start : start + 25]})

        started = time.perf_counter()
        await asyncio.to_thread(write)
        return {"subscribed": len(items), "seconds": time.perf_counter() - started}

    async def configure(request: dict[str, Any]) -> dict[str, Any]:
        for name in FANOUT_VARIABLES:
            os.environ.pop(name, None)
        os.environ.update(request["env"])
        return {"ok": True}

    async def do_publish(request: dict[str, Any]) -> dict[str, Any]:
        data = {"marker": request["marker"], "text": "benchmark event"}
        started = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        report = await asyncio.to_thread(publish, request["tenant"], request["topic"], data)
        return {
            "started_ns": started,
            "delivered": len(report.delivered),
            "queued": report.queued,
            "shards": report.shards,
        }

    await serve(
        start, {"configure": configure, "publish": do_publish, "subscribe_all": subscribe_all}
    )


def run(config: RunConfig) -> list[Result]:
    require_local_stack()
    return asyncio.run(_measure(config))


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        asyncio.run(_serve())
