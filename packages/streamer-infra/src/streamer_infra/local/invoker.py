"""Runs handler functions the way Lambda does, in worker threads of this process.

Each function gets its own bounded pool (its "reserved concurrency"), so a burst of long
jobs in the processor never starves `$connect`. Each invocation is isolated the way Lambda
isolates them: the event is a fresh JSON copy, the result is JSON-serialised (what cannot
be serialised fails like Lambda's marshal error), and an exception becomes a reported
invocation error, logged once, that never reaches the gateway's event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from streamer_core.auth import redact_tokens

from .events import LambdaContext
from .threads import DaemonPool

__all__ = ["Handler", "Invocation", "Invoker", "LocalFunction"]

logger = logging.getLogger("streamer.local.lambda")

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass(frozen=True)
class LocalFunction:
    """One deployed function: a handler plus the limits Lambda would enforce on it."""

    name: str
    handler: Handler
    timeout: float = 30.0
    memory: int = 3008
    concurrency: int = 64


@dataclass(frozen=True)
class Invocation:
    """The outcome of one invocation, as the Lambda Invoke API reports it."""

    request_id: str
    result: Any = None
    error_type: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_type is None


class Invoker:
    """Invokes `LocalFunction`s on per-function thread pools."""

    def __init__(
        self, *, function_prefix: str, region: str = "us-east-1", account_id: str = "123456789012"
    ) -> None:
        self._prefix = function_prefix
        self._region = region
        self._account_id = account_id
        self._pools: dict[str, DaemonPool] = {}

    def _pool(self, function: LocalFunction) -> DaemonPool:
        pool = self._pools.get(function.name)
        if pool is None:
            pool = DaemonPool(function.concurrency, f"lambda-{function.name}")
            self._pools[function.name] = pool
        return pool

    async def invoke(
        self,
        function: LocalFunction,
        event: dict[str, Any],
        *,
        expected_errors: Collection[str] = (),
    ) -> Invocation:
        """Run one invocation; never raises for anything the handler does.

        `expected_errors` are messages that are part of a function's contract (an authorizer's
        "Unauthorized") and are logged as one quiet line rather than a traceback.
        """
        context = LambdaContext(
            f"{self._prefix}-{function.name}",
            timeout_seconds=function.timeout,
            memory_limit_in_mb=function.memory,
            region=self._region,
            account_id=self._account_id,
        )
        payload = json.dumps(event)
        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()

        def mark_started() -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_settle, started)

        try:
            future = self._pool(function).submit(
                _run, function.handler, payload, context, frozenset(expected_errors), mark_started
            )
        except RuntimeError as exc:
            return Invocation(context.aws_request_id, None, "ServiceUnavailable", str(exc))
        outcome = asyncio.wrap_future(future)
        # Waiting for a free worker is not charged to the invocation: Lambda's timeout
        # starts with the handler, so only the run itself is bounded below.
        first: set[asyncio.Future[Any]] = {started, outcome}
        await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
        try:
            return await asyncio.wait_for(outcome, function.timeout)
        except TimeoutError:
            message = f"Task timed out after {function.timeout:.2f} seconds"
            logger.error("%s %s: %s", context.function_name, context.aws_request_id, message)
            return Invocation(context.aws_request_id, None, "Sandbox.Timedout", message)

    def shutdown(self) -> None:
        """Stop accepting work; invocations still running finish in their threads."""
        for pool in self._pools.values():
            pool.shutdown()
        self._pools.clear()


def _settle(started: asyncio.Future[None]) -> None:
    if not started.done():
        started.set_result(None)


def _run(
    handler: Handler,
    payload: str,
    context: LambdaContext,
    expected: frozenset[str],
    on_start: Callable[[], None],
) -> Invocation:
    context.start_clock()
    on_start()
    request_id = context.aws_request_id
    try:
        result = handler(json.loads(payload), context)
    except Exception as exc:
        message = str(exc)
        if message in expected:
            logger.info("%s %s: %s", context.function_name, request_id, message)
        else:
            # Tracebacks quote arguments and messages: a token must not reach the log.
            logger.error(
                "%s %s failed: %s\n%s",
                context.function_name,
                request_id,
                type(exc).__name__,
                redact_tokens("".join(traceback.format_exception(exc)).rstrip()),
            )
        return Invocation(request_id, None, type(exc).__name__, message)
    try:
        marshalled = json.loads(json.dumps(result))
    except (TypeError, ValueError) as exc:
        message = f"Unable to marshal response: {exc}"
        logger.error("%s %s: %s", context.function_name, request_id, message)
        return Invocation(request_id, None, "Runtime.MarshalError", message)
    return Invocation(request_id, marshalled)
