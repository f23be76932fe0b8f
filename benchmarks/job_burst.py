"""Jobs that arrive together: a burst of 1 s jobs through the local stack.

Twenty, then two hundred jobs are submitted at once over ten connections; each reports
progress as it starts and every quarter second, and completes after one second. Per job:
submit → first progress (how long it waited to start) and submit → complete, as p50 and
max, against the ideal: ceil(jobs / concurrency) x job length, what the function's reserved
concurrency (dev: 10) allows if every instance runs one job at a time and never idles.

Two ways of taking jobs are measured: batches of up to ten records run side by side in
one invocation (the processor's way, with the event source mapping's default batch size),
and one job per invocation (batch size 1, which a deployment can choose). The stack runs in
a process of its own, as `streamer dev` does (pinned to one CPU).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from benchmarks import clients
from benchmarks.control import ServerProcess, serve
from benchmarks.harness import Result, RunConfig, Target, percentile
from benchmarks.stack_server import require_local_stack

NAME = "job_burst"
TENANT, USER = "tenant-bench", "user-bench"
CONCURRENCY = 10
"""The dev stack's reserved concurrency for the processor (DESIGN.md), set explicitly."""
STEPS = 4
STEP_S = 0.25
JOB_S = STEPS * STEP_S
CLIENTS = 10
BURST_TIMEOUT_S = 120.0
PAUSE_S = 1.0
"""Before each burst: the previous one's deletes and idle polls settle first."""


# ------------------------------------------------------------------ the stack's process


async def _serve(options: dict[str, Any]) -> None:
    from streamer_core.auth import generate_key_pair
    from streamer_infra.local import DevKeys, LocalStack, LocalStackConfig

    environment = {
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "STREAMER_RATE_LIMIT": str(10**9),
        "STREAMER_DEMO_DELAY": str(STEP_S),
    }

    @contextlib.asynccontextmanager
    async def start() -> AsyncIterator[dict[str, Any]]:
        private_pem, public_pem = generate_key_pair("RS256")
        config = LocalStackConfig(
            port=0,
            env="burst",
            keys=DevKeys(public_pem, private_pem),
            environment=environment,
            sqs_batch_size=int(options["batch"]),
            sqs_concurrency=CONCURRENCY,
            pin_cpu=True,  # as `streamer dev` does
            server_gc=True,  # likewise
        )
        async with LocalStack(config) as stack:
            yield {"ws_url": stack.ws_url, "token": stack.token(USER, TENANT, ("reports:write",))}

    await serve(start, {})


# ------------------------------------------------------------------ the clients


async def _burst(url: str, token: str, jobs: int, tag: str) -> list[tuple[float, float]]:
    """(submit → first progress, submit → complete) in seconds, per job."""
    sockets, _ = await clients.open_many(url, CLIENTS, token)
    submitted: dict[str, float] = {}
    first: dict[str, float] = {}
    done: dict[str, float] = {}
    finished = asyncio.Event()

    async def listen(ws: Any) -> None:
        async for raw in ws:
            arrived = time.perf_counter()
            frame = json.loads(raw)
            request_id = frame.get("request_id")
            kind = frame.get("type")
            if kind == "progress":
                first.setdefault(request_id, arrived)
            elif kind == "complete":
                done[request_id] = arrived
                if len(done) == jobs:
                    finished.set()
            elif kind == "error":
                raise RuntimeError(f"job failed: {frame}")

    listeners = [asyncio.create_task(listen(ws)) for ws in sockets]
    try:
        for index in range(jobs):
            request_id = f"{tag}-{index}"
            frame = {"action": "generate_report", "id": request_id, "payload": {"steps": STEPS}}
            submitted[request_id] = time.perf_counter()
            await sockets[index % CLIENTS].send(json.dumps(frame, separators=(",", ":")))
        waiting = asyncio.create_task(finished.wait())
        await asyncio.wait(
            [waiting, *listeners], timeout=BURST_TIMEOUT_S, return_when="FIRST_COMPLETED"
        )
        for listener in listeners:
            if listener.done() and listener.exception() is not None:
                raise listener.exception()  # type: ignore[misc]
        if not finished.is_set():
            raise RuntimeError(f"{len(done)} of {jobs} jobs completed in {BURST_TIMEOUT_S:g} s")
    finally:
        for listener in listeners:
            listener.cancel()
        await clients.close_all(sockets)
    return [(first[r] - t, done[r] - t) for r, t in submitted.items()]


def _rows(mode: str, jobs: int, samples: list[tuple[float, float]], cpu_s: float) -> list[Result]:
    ideal = math.ceil(jobs / CONCURRENCY) * JOB_S
    starts = [s for s, _ in samples]
    ends = [e for _, e in samples]
    note = (
        f"ideal {ideal:g} s = ceil({jobs}/{CONCURRENCY}) x {JOB_S:g} s; "
        f"the stack's process used {cpu_s * 1000 / jobs:.0f} ms CPU per job"
    )
    extra = {
        "ideal_s": ideal,
        "stack_cpu_s": cpu_s,
        "samples_s": [[round(s, 4), round(e, 4)] for s, e in samples],
    }
    return [
        Result(
            NAME,
            f"{jobs} jobs, {mode}: submit -> first progress p50",
            "s",
            [percentile(starts, 50)],
            note=note,
        ),
        Result(
            NAME,
            f"{jobs} jobs, {mode}: submit -> first progress max",
            "s",
            [max(starts)],
            target=Target(ideal - JOB_S, on="value"),
            note=note,
        ),
        Result(
            NAME,
            f"{jobs} jobs, {mode}: submit -> complete p50",
            "s",
            [percentile(ends, 50)],
            note=note,
        ),
        Result(
            NAME,
            f"{jobs} jobs, {mode}: submit -> complete max",
            "s",
            [max(ends)],
            target=Target(ideal, on="value"),
            note=note,
            extra=extra,
        ),
    ]


async def _measure(config: RunConfig) -> list[Result]:
    bursts = (20,) if config.quick else (20, 200)
    modes = ((10, "batches of 10 side by side"), (1, "one job per invocation"))
    results: list[Result] = []
    for batch, mode in modes:
        async with ServerProcess("benchmarks.job_burst", json.dumps({"batch": batch})) as stack:
            url, token = stack.info["ws_url"], stack.info["token"]
            await _burst(url, token, CONCURRENCY, f"warm-{batch}")  # start every container
            for jobs in bursts:
                await asyncio.sleep(PAUSE_S)
                cpu = stack.cpu_seconds()
                samples = await _burst(url, token, jobs, f"b{batch}-{jobs}-{time.time_ns()}")
                results.extend(_rows(mode, jobs, samples, stack.cpu_seconds() - cpu))
    return results


def run(config: RunConfig) -> list[Result]:
    require_local_stack()
    return asyncio.run(_measure(config))


if __name__ == "__main__":
    asyncio.run(_serve(json.loads(sys.argv[1])))
