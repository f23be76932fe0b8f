"""Round trip of a sync `echo` through the local stack, against a plain `websockets` echo.

One client sends a small frame, waits for the answer, and repeats. Through the local stack the
frame goes gateway -> router in a worker thread (JWT principal from the authorizer context, the
rate limit's budget reserved in DynamoDB on moto now and then) -> route response. The plain
server just echoes the bytes, so the ratio is everything Streamer adds on one machine. A third
server, the local stack with a router that does nothing, isolates the gateway's own share. Each
server is a fresh process; they take turns run by run (an idle server costs nothing), so a
change in the machine's load during the benchmark hits all three alike.
"""

from __future__ import annotations

import asyncio
import contextlib

from benchmarks import clients
from benchmarks.control import ServerProcess
from benchmarks.harness import Result, RunConfig, Target, percentile
from benchmarks.stack_server import collector_window, require_local_stack, stack_process

NAME = "roundtrip"
WARMUP = 50


async def _measure(config: RunConfig) -> list[Result]:
    count = 200 if config.quick else 1000
    repeat = config.repeats(full=5, quick=3)
    servers = {
        "plain": ServerProcess("benchmarks.baselines"),
        "stack": stack_process(),
        "gateway": stack_process(noop_router=True),
    }
    runs: dict[str, list[list[float]]] = {name: [] for name in servers}
    cpu_us: dict[str, list[float]] = {name: [] for name in servers}
    async with contextlib.AsyncExitStack() as stack:
        sockets = {}
        for name, server in servers.items():
            await stack.enter_async_context(server)
            ws = await clients.open_connection(server.info["ws_url"], server.info.get("token"))
            stack.push_async_callback(ws.close)
            await clients.round_trips(ws, WARMUP, streamer=name != "plain")
            sockets[name] = ws
        streamer_servers = ("stack", "gateway")
        before = {name: await servers[name].call("collector") for name in streamer_servers}
        for _ in range(repeat):
            for name, ws in sockets.items():
                started = servers[name].cpu_seconds()
                runs[name].append(await clients.round_trips(ws, count, streamer=name != "plain"))
                cpu_us[name].append((servers[name].cpu_seconds() - started) / count * 1e6)
        collector = {
            name: collector_window(before[name], await servers[name].call("collector"))
            for name in streamer_servers
        }
    plain_runs, stack_runs, floor_runs = runs["plain"], runs["stack"], runs["gateway"]
    results = []
    for pct, limit in ((50, 2.0), (99, 3.0)):
        results.append(
            Result(
                NAME,
                f"sync echo p{pct}",
                "ms",
                [percentile(run, pct) for run in stack_runs],
                baseline_name="plain echo",
                baseline_samples=[percentile(run, pct) for run in plain_runs],
                target=Target(limit),
                note=f"{count} sequential round trips per run",
                extra={"collector": collector["stack"]},
            )
        )
    for pct in (50, 99):
        results.append(
            Result(
                NAME,
                f"gateway only (no-op router) p{pct}",
                "ms",
                [percentile(run, pct) for run in floor_runs],
                baseline_name="plain echo",
                baseline_samples=[percentile(run, pct) for run in plain_runs],
                note="what the local gateway costs before any handler work",
                extra={"collector": collector["gateway"]},
            )
        )
    for name, label in (("stack", "sync echo"), ("gateway", "gateway only (no-op router)")):
        results.append(
            Result(
                NAME,
                f"{label} server CPU per round trip",
                "us CPU",
                cpu_us[name],
                baseline_name="plain echo",
                baseline_samples=cpu_us["plain"],
                note="user + system time of the server process, all threads, per round trip",
            )
        )
    return results


def run(config: RunConfig) -> list[Result]:
    require_local_stack()
    return asyncio.run(_measure(config))
