"""An async job through the local stack: acknowledgment, first progress, completion.

Submit-to-acknowledgment is the router's work (idempotent create, SQS send, subscribe).
Submit-to-first-progress adds the queue hop and the processor's claim: the part a user waits on
before seeing anything move (target under 50 ms). Last-progress-to-complete is the processor's
final write and delivery. Jobs are submitted one at a time, each to an idle stack (`PAUSE_S`).
The demo action's step delay is set short so the job's own sleeping does not dominate the run;
it does not enter the three figures.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from benchmarks import clients
from benchmarks.harness import Result, RunConfig, Target
from benchmarks.stack_server import require_local_stack, stack_process

NAME = "async_job"
STEP_DELAY_S = 0.02
PAUSE_S = 0.1
"""Between jobs, so each is submitted to an idle stack. Without it the next job starts while
the event source mapping is still deleting the previous job's message: that clean-up is
part of the previous job, not of the next one's latency."""
JOB_TIMEOUT_S = 30.0


async def _one_job(ws: Any, request_id: str) -> tuple[float, float, float]:
    frame = {"action": "generate_report", "id": request_id, "payload": {}}
    started = time.perf_counter()
    await ws.send(json.dumps(frame, separators=(",", ":")))
    acked = first = last = None
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        raw = await asyncio.wait_for(ws.recv(), max(0.0, deadline - time.monotonic()))
        arrived = time.perf_counter()
        reply = json.loads(raw)
        if reply.get("request_id") != request_id:
            continue
        kind = reply.get("type")
        if kind == "acknowledgment":
            acked = arrived
        elif kind == "progress":
            first = first or arrived
            last = arrived
        elif kind == "complete":
            if acked is None or first is None or last is None:
                raise RuntimeError(f"job {request_id} completed without ack or progress")
            return (
                (acked - started) * 1000,
                (first - started) * 1000,
                (arrived - last) * 1000,
            )
        elif kind == "error":
            raise RuntimeError(f"job {request_id} failed: {reply}")


async def _measure(config: RunConfig) -> list[Result]:
    jobs = config.repeats(full=20, quick=5)
    ack: list[float] = []
    first: list[float] = []
    done: list[float] = []
    async with stack_process(demo_delay=STEP_DELAY_S) as stack:
        ws = await clients.open_connection(stack.info["ws_url"], stack.info["token"])
        try:
            await _one_job(ws, f"warm-{time.time_ns()}")
            for index in range(jobs):
                await asyncio.sleep(PAUSE_S)
                a, f, d = await _one_job(ws, f"job-{time.time_ns()}-{index}")
                ack.append(a)
                first.append(f)
                done.append(d)
        finally:
            await ws.close()
    note = f"one sample per job, jobs run one after another, {PAUSE_S * 1000:g} ms apart"
    return [
        Result(NAME, "submit -> acknowledgment", "ms", ack, note=note),
        Result(
            NAME,
            "submit -> first progress",
            "ms",
            first,
            target=Target(50, on="value"),
            note=note,
        ),
        Result(NAME, "last progress -> complete", "ms", done, note=note),
    ]


def run(config: RunConfig) -> list[Result]:
    require_local_stack()
    return asyncio.run(_measure(config))
