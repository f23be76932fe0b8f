"""Runs handler functions the way Lambda does, in worker threads of this process.

Each function gets its own bounded pool (its "reserved concurrency"), so a burst of long
jobs in the processor never starves `$connect`. Each invocation is isolated the way Lambda
isolates them: the event is JSON values no other invocation holds (a copy, unless the
caller built it for this one), the result is JSON-serialised (what cannot
be serialised fails like Lambda's marshal error), and an exception becomes a reported
invocation error, logged once, that never reaches the gateway's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import traceback
from collections.abc import Callable, Collection
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

from streamer_core.auth import redact_tokens

from streamer_infra.local._events import LambdaContext
from streamer_infra.local._threads import DaemonPool

__all__ = ["Handler", "Invocation", "Invoker", "LocalFunction", "ThreadInvoker", "log_failure"]

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
    entry: str | None = None
    """The handler string (`package.module.function`) an archive's runtime imports; None for
    a function given as a callable, which can only run in this process."""


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


class Invoker(Protocol):
    """What the gateway and the queue poller need to run a function, wherever it runs: on
    threads of this process (`ThreadInvoker`) or in worker processes from the built archive
    (`processes.ProcessInvoker`)."""

    async def invoke(
        self,
        function: LocalFunction,
        event: dict[str, Any],
        *,
        expected_errors: Collection[str] = (),
        fresh: bool = False,
    ) -> Invocation: ...

    def shutdown(self) -> None: ...


class ThreadInvoker:
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
        fresh: bool = False,
    ) -> Invocation:
        """Run one invocation; never raises for anything the handler does.

        `expected_errors` are messages that are part of a function's contract (an authorizer's
        "Unauthorized") and are logged as one quiet line rather than a traceback.

        The handler gets a copy of `event` made through JSON, as Lambda would hand it over:
        nothing it does to the event reaches the caller, and a value JSON lacks fails here.
        `fresh=True` says the caller built `event` from JSON values for this invocation
        alone (the gateway's event builders do), so it is handed over as it is.
        """
        context = LambdaContext(
            f"{self._prefix}-{function.name}",
            timeout_seconds=function.timeout,
            memory_limit_in_mb=function.memory,
            region=self._region,
            account_id=self._account_id,
        )
        payload: str | dict[str, Any] = event if fresh else json.dumps(event)
        loop = asyncio.get_running_loop()
        result: asyncio.Future[Invocation] = loop.create_future()
        run = _Run()

        def finish(done: Future[Invocation]) -> None:
            # The one wake-up of the loop per invocation: when its outcome is known. It runs
            # once the worker counts itself free, so the next invocation finds it idle.
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(_settle, result, done, context.aws_request_id)

        try:
            job = self._pool(function).submit(
                _run, function.handler, payload, context, frozenset(expected_errors), run
            )
        except RuntimeError as exc:
            return Invocation(context.aws_request_id, None, "ServiceUnavailable", str(exc))
        job.add_done_callback(finish)
        watch = _Watch(loop, result, run, function.timeout, context)
        try:
            return await result
        finally:
            watch.cancel()

    def shutdown(self) -> None:
        """Stop accepting work; invocations still running finish in their threads."""
        for pool in self._pools.values():
            pool.shutdown()
        self._pools.clear()


class _Run:
    """When the invocation's handler started, written by its worker thread."""

    __slots__ = ("started",)

    def __init__(self) -> None:
        self.started: float | None = None


class _Watch:
    """Lambda's timeout, checked by a timer on the loop rather than signalled by the worker.

    Waiting for a free worker is not charged to the invocation (Lambda's clock starts with
    the handler), so a timer that fires before the handler started, or before its time is
    up, sets itself again for what is left. Reading the start time the worker wrote costs
    the worker nothing, where telling the loop "started" would wake it in the middle of
    every invocation.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        result: asyncio.Future[Invocation],
        run: _Run,
        timeout: float,
        context: LambdaContext,
    ) -> None:
        self._loop = loop
        self._result = result
        self._run = run
        self._timeout = timeout
        self._context = context
        self._handle = loop.call_later(timeout, self._check)

    def _check(self) -> None:
        if self._result.done():
            return
        started = self._run.started
        left = self._timeout if started is None else started + self._timeout - time.monotonic()
        if left > 0:
            self._handle = self._loop.call_later(left, self._check)
            return
        message = f"Task timed out after {self._timeout:.2f} seconds"
        context = self._context
        logger.error("%s %s: %s", context.function_name, context.aws_request_id, message)
        self._result.set_result(
            Invocation(context.aws_request_id, None, "Sandbox.Timedout", message)
        )

    def cancel(self) -> None:
        self._handle.cancel()


def _settle(result: asyncio.Future[Invocation], done: Future[Invocation], request_id: str) -> None:
    if result.done():
        return
    error = done.exception()
    if error is None:
        result.set_result(done.result())
    else:  # a failure of the invocation machinery itself, outside the handler
        logger.error("invocation %s failed", request_id, exc_info=error)
        result.set_result(Invocation(request_id, None, type(error).__name__, str(error)))


def _run(
    handler: Handler,
    payload: str | dict[str, Any],
    context: LambdaContext,
    expected: frozenset[str],
    run: _Run,
) -> Invocation:
    run.started = time.monotonic()
    context.start_clock()
    return _outcome(handler, payload, context, expected)


def _outcome(
    handler: Handler,
    payload: str | dict[str, Any],
    context: LambdaContext,
    expected: frozenset[str],
) -> Invocation:
    request_id = context.aws_request_id
    try:
        result = handler(json.loads(payload) if isinstance(payload, str) else payload, context)
    except BaseException as exc:  # a handler's sys.exit() ends its invocation, not a worker
        message = str(exc)
        log_failure(
            context.function_name,
            request_id,
            type(exc).__name__,
            message,
            "".join(traceback.format_exception(exc)),
            expected=message in expected,
        )
        return Invocation(request_id, None, type(exc).__name__, message)
    try:
        marshalled = json.loads(json.dumps(result))
    except (TypeError, ValueError) as exc:
        message = f"Unable to marshal response: {exc}"
        logger.error("%s %s: %s", context.function_name, request_id, message)
        return Invocation(request_id, None, "Runtime.MarshalError", message)
    return Invocation(request_id, marshalled)


def log_failure(
    function_name: str,
    request_id: str,
    error_type: str,
    message: str,
    stack: str,
    *,
    expected: bool = False,
) -> None:
    """Log a failed invocation once: one quiet line when the error is part of the function's
    contract, the redacted traceback otherwise (tracebacks quote arguments and messages, and a
    token must not reach the log)."""
    if expected:
        logger.info("%s %s: %s", function_name, request_id, message)
        return
    logger.error(
        "%s %s failed: %s\n%s",
        function_name,
        request_id,
        error_type,
        redact_tokens(stack.rstrip() or message),
    )
