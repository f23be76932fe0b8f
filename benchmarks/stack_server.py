"""The local stack (`streamer dev`'s `LocalStack`) as a benchmark server process.

Run as `python -m benchmarks.stack_server '{"demo_delay": 0.02}'`; it speaks the channel in
`benchmarks.control`. The handlers' log level is WARNING, as the plain baseline logs nothing;
the per-message rate limit is lifted because one benchmark client sends thousands of
messages a minute, far beyond the default of 100, on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from benchmarks.control import ServerProcess, serve
from benchmarks.harness import Unavailable, module_exists

TENANT, USER = "tenant-bench", "user-bench"
PERMISSIONS = ("reports:write",)

HANDLER_ENVIRONMENT = {
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "STREAMER_RATE_LIMIT": str(10**9),
}


def require_local_stack() -> None:
    """Skip (not fail) a benchmark while the local stack or the handlers are incomplete."""
    for module in (
        "streamer_infra.local",
        "streamer_handlers.demo",
        "streamer_handlers.functions.processor",
    ):
        if not module_exists(module):
            raise Unavailable(f"{module} does not exist yet")


def stack_process(
    *, demo_delay: float = 0.0, noop_router: bool = False, graceful: bool = True
) -> ServerProcess:
    """`noop_router=True` deploys a router that answers without any work: what remains is
    the gateway's own cost (socket, event building, worker-thread hop, route response)."""
    options = json.dumps({"demo_delay": demo_delay, "noop_router": noop_router})
    return ServerProcess("benchmarks.stack_server", options, graceful=graceful)


def noop_router(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Answers like the real router's echo, so the client cannot tell the difference."""
    frame = json.loads(event["body"])
    body = {"type": "response", "request_id": frame.get("id"), "result": frame.get("payload")}
    return {"statusCode": 200, "body": json.dumps(body, separators=(",", ":"))}


class CollectorClock:
    """Time spent in the cyclic garbage collector, per generation, for the figures' notes."""

    def __init__(self) -> None:
        self._started = 0.0
        self.totals = [0.0, 0.0, 0.0]
        self.counts = [0, 0, 0]
        self.longest = [0.0, 0.0, 0.0]
        gc.callbacks.append(self._note)

    def _note(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation, spent = info["generation"], time.perf_counter() - self._started
        self.totals[generation] += spent
        self.counts[generation] += 1
        self.longest[generation] = max(self.longest[generation], spent)

    def report(self) -> dict[str, Any]:
        """Counts and totals since start; the longest pause since the last report."""
        report = {
            "collections": list(self.counts),
            "total_ms": [round(t * 1000, 2) for t in self.totals],
            "longest_ms": [round(t * 1000, 2) for t in self.longest],
        }
        self.longest = [0.0, 0.0, 0.0]
        return report


def collector_window(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What the collector did between two `collector` reports, per generation (young first)."""
    window = {
        key: [round(b - a, 2) for a, b in zip(before[key], after[key], strict=True)]
        for key in ("collections", "total_ms")
    }
    return {**window, "longest_ms": after["longest_ms"]}


def _functions(options: dict[str, Any]) -> Any:
    if not options.get("noop_router"):
        return None
    from streamer_handlers.deployment import function_specs

    module = "benchmarks.stack_server"
    return [
        dataclasses.replace(spec, handler=f"{module}.noop_router")
        if spec.name == "router"
        else spec
        for spec in function_specs()
    ]


async def main(options: dict[str, Any]) -> None:
    from streamer_core.auth import generate_key_pair
    from streamer_handlers import publish
    from streamer_handlers.deployment import get_runtime
    from streamer_infra.local import DevKeys, LocalStack, LocalStackConfig

    os.environ.update(HANDLER_ENVIRONMENT)
    stack_box: list[LocalStack] = []
    collector = CollectorClock()

    @contextlib.asynccontextmanager
    async def start() -> AsyncIterator[dict[str, Any]]:
        private_pem, public_pem = generate_key_pair("RS256")
        config = LocalStackConfig(
            port=0,
            env="bench",
            keys=DevKeys(public_pem, private_pem),
            environment={
                **HANDLER_ENVIRONMENT,
                "STREAMER_DEMO_DELAY": str(options.get("demo_delay", 0.0)),
            },
            functions=_functions(options),
            pin_cpu=True,  # as `streamer dev` does
            server_gc=True,  # likewise
        )
        async with LocalStack(config) as stack:
            stack_box.append(stack)
            yield {
                "ws_url": stack.ws_url,
                "management_url": stack.management_url,
                "token": stack.token(USER, TENANT, PERMISSIONS),
            }

    async def do_publish(request: dict[str, Any]) -> dict[str, Any]:
        data = {"marker": request["marker"], "text": "benchmark event"}
        started = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        report = await asyncio.to_thread(publish, request["tenant"], request["topic"], data)
        finished = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        return {
            "started_ns": started,
            "finished_ns": finished,
            "delivered": len(report.delivered),
            "failed": len(report.failed) + len(report.gone),
        }

    async def query_subscribers(request: dict[str, Any]) -> dict[str, Any]:
        """Time the subscriber lookup alone: splits a fan-out into query and delivery."""
        subscriptions = get_runtime().storage.subscriptions
        started = time.perf_counter()
        found = await asyncio.to_thread(
            subscriptions.all_subscribers, request["tenant"], request["topic"]
        )
        return {"ms": (time.perf_counter() - started) * 1000, "subscribers": len(found)}

    async def count(_: dict[str, Any]) -> dict[str, Any]:
        return {"connections": len(stack_box[0].gateway.connections)}

    async def collector_report(_: dict[str, Any]) -> dict[str, Any]:
        return collector.report()

    commands = {
        "publish": do_publish,
        "query_subscribers": query_subscribers,
        "count": count,
        "collector": collector_report,
    }
    await serve(start, commands)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}))
