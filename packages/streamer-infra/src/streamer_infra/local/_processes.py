"""Runs the built Lambda archive the way Lambda's runtime does: `streamer dev --from-build`.

Each function gets execution environments of its own: worker processes of an isolated
interpreter (``-I -S``: no site-packages, no ``PYTHON*`` variables) whose import path is only
the unpacked archive (a read-only task root) and the packages Lambda's runtime provides. A
worker imports the handler once (its cold start), then serves one invocation at a time; a
burst beyond the idle workers starts new ones, up to the function's concurrency. The worker's
environment is the deployment's (`streamer_handlers.deployment.function_environment`), the
stack's local-only differences, and the variables Lambda itself sets; nothing of the
developer's shell leaks in.

So a module the archive lacks, a wrong handler string or a variable only AWS sets fails here,
before `pulumi up`, instead of at the first `$connect` on AWS.

A worker's stderr is its log stream: every line is written to this process's stderr, and,
while an invocation runs in it, also handed to the `worker_output` callback of the context
that invoked it (the console shows an invocation's own log lines that way).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import os
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamer_infra.local._invoker import Invocation, LocalFunction, log_failure

__all__ = [
    "ArchiveRuntime",
    "ProcessInvoker",
    "lambda_variables",
    "trace_header",
    "worker_output",
]

logger = logging.getLogger("streamer.local.lambda")

BOOTSTRAP = Path(__file__).with_name("_lambda_bootstrap.py")
_STREAM_LIMIT = 64 * 1024 * 1024
"""A response line may carry a whole result; asyncio's default line limit is 64 KiB."""

worker_output: contextvars.ContextVar[Callable[[str], None] | None] = contextvars.ContextVar(
    "worker_output", default=None
)
"""Set by a caller of `ProcessInvoker.invoke` that wants the log lines of that invocation:
each line the worker writes to stderr while it runs (its init phase included, for a cold
start) is passed to this callback, on the event loop, before `invoke` returns."""


@dataclass(frozen=True)
class ArchiveRuntime:
    """Where the archive twin lives and what every worker's environment holds."""

    python: Path
    task_root: Path
    runtime_dir: Path
    environment: Mapping[str, str]
    """The function environment plus the stack's local-only variables."""
    python_version: str = "3.12"
    xray_daemon_address: str | None = None


def trace_header() -> str:
    """An X-Ray trace header as Lambda puts in ``_X_AMZN_TRACE_ID``: a new sampled trace."""
    root = f"1-{int(time.time()):08x}-{secrets.token_hex(12)}"
    return f"Root={root};Parent={secrets.token_hex(8)};Sampled=1"


def lambda_variables(
    runtime: ArchiveRuntime,
    function: LocalFunction,
    function_name: str,
    region: str,
) -> dict[str, str]:
    """What Lambda's runtime sets in every execution environment, besides the function's own
    variables (which cannot override these, as on AWS)."""
    entry = function.entry
    if entry is None:
        raise ValueError(f"function {function.name} has no handler string to run from an archive")
    variables = {
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{runtime.python_version}",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "LAMBDA_TASK_ROOT": str(runtime.task_root),
        "LAMBDA_RUNTIME_DIR": str(runtime.runtime_dir),
        "_HANDLER": entry,
        "TZ": ":UTC",
        "LANG": "en_US.UTF-8",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
    }
    if runtime.xray_daemon_address:
        variables["AWS_XRAY_DAEMON_ADDRESS"] = runtime.xray_daemon_address
    return variables


class WorkerGone(RuntimeError):
    """The worker process ended (or never started) without answering."""


class _LogStream:
    """A worker's stderr, read line by line on the event loop.

    The pipe's read end is read directly (not through a transport) so that `drain` can take
    everything already written without waiting: the worker flushes its stderr before it
    answers, so once the answer is read, draining here leaves no line of that invocation
    behind for the next one.
    """

    _MAX_READS = 16
    """Reads per wake-up, so that a worker writing without pause cannot hold the loop."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._partial = b""
        self._open = True
        self.sink: Callable[[str], None] | None = None
        os.set_blocking(fd, False)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        self.drain(self._MAX_READS)

    def drain(self, reads: int | None = None) -> None:
        """Take what the worker has written so far (up to `reads` chunks), and end at EOF."""
        count = 0
        while self._open and (reads is None or count < reads):
            count += 1
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self.close()
                return
            *lines, self._partial = (self._partial + chunk).split(b"\n")
            for line in lines:
                self._emit(line)

    def flush(self) -> None:
        """Hand over a last line the worker left without a newline."""
        if self._partial:
            line, self._partial = self._partial, b""
            self._emit(line)

    def _emit(self, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace")
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        sink = self.sink
        if sink is not None:
            try:
                sink(line)
            except Exception:
                logger.exception("a worker output callback failed")

    def close(self) -> None:
        if not self._open:
            return
        self.flush()
        self._open = False
        if not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
        os.close(self._fd)


class _Worker:
    """One execution environment: an interpreter process that has imported the handler."""

    def __init__(
        self, process: asyncio.subprocess.Process, init_ms: float, stderr: _LogStream
    ) -> None:
        self.process = process
        self.init_ms = init_ms
        self.stderr = stderr

    @classmethod
    async def start(
        cls,
        runtime: ArchiveRuntime,
        environment: Mapping[str, str],
        sink: Callable[[str], None] | None = None,
    ) -> _Worker | dict[str, Any]:
        """A ready worker, or Lambda's error payload when the init phase failed; `sink` gets
        the init phase's log lines."""
        read_end, write_end = os.pipe()
        stderr = _LogStream(read_end)
        stderr.sink = sink
        try:
            process = await asyncio.create_subprocess_exec(
                str(runtime.python),
                # As `archive_twin.twin_command`: no site-packages, no PYTHON* variables, and no
                # bytecode written into trees Lambda keeps read-only.
                "-I",
                "-S",
                "-B",
                str(BOOTSTRAP),
                str(runtime.task_root),
                str(runtime.runtime_dir),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=write_end,
                env=dict(environment),
                cwd=str(runtime.task_root),
                limit=_STREAM_LIMIT,
            )
        except BaseException:
            stderr.close()
            raise
        finally:
            # The worker holds the write end now: its exit is the stream's end.
            os.close(write_end)
        worker = cls(process, 0.0, stderr)
        try:
            hello = await worker._read()
        except WorkerGone as exc:
            await worker.end()
            return {"errorType": "Runtime.ExitError", "errorMessage": str(exc)}
        except BaseException:
            await asyncio.shield(worker.end())
            raise
        if "init_error" in hello:
            await worker.end()
            error: dict[str, Any] = hello["init_error"]
            return error
        worker.init_ms = float(hello["ready"])
        return worker

    def release(self) -> None:
        """The invocation is over: its last lines go to its callback, later ones to none."""
        self.stderr.drain()
        self.stderr.flush()
        self.stderr.sink = None

    async def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await self.process.stdout.readline()
        if not line:
            code = await self.process.wait()
            raise WorkerGone(f"RequestId: the worker exited with status {code}")
        document: dict[str, Any] = json.loads(line)
        return document

    async def call(self, invocation: Mapping[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(invocation).encode() + b"\n")
            await self.process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise WorkerGone(f"the worker is gone: {exc}") from None
        return await self._read()

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    def kill(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()

    async def end(self) -> None:
        """Kill the process and wait for it, so that its transport closes while the loop runs."""
        self.kill()
        with contextlib.suppress(ProcessLookupError, TimeoutError):
            await asyncio.wait_for(self.process.wait(), 5)
        # Whatever the worker wrote before it died, then the end of the stream.
        self.stderr.drain()
        self.stderr.close()


class _Pool:
    """The execution environments of one function, at most `concurrency` of them."""

    def __init__(self, concurrency: int) -> None:
        self.idle: list[_Worker] = []
        self.busy = 0
        self.all: set[_Worker] = set()
        self.slots = asyncio.Semaphore(concurrency)


class ProcessInvoker:
    """The local stack's invoker for `--from-build`: the same interface as `Invoker`."""

    def __init__(
        self,
        runtime: ArchiveRuntime,
        *,
        function_prefix: str,
        region: str = "us-east-1",
        account_id: str = "123456789012",
    ) -> None:
        self._runtime = runtime
        self._prefix = function_prefix
        self._region = region
        self._account_id = account_id
        self._pools: dict[str, _Pool] = {}
        self._closed = False
        self._ended: set[_Worker] = set()
        self.cold_starts: dict[str, int] = {}
        """Workers started per function: each is one cold start."""

    def _pool(self, function: LocalFunction) -> _Pool:
        pool = self._pools.get(function.name)
        if pool is None:
            pool = self._pools[function.name] = _Pool(function.concurrency)
        return pool

    def function_name(self, function: LocalFunction) -> str:
        return f"{self._prefix}-{function.name}"

    def environment(self, function: LocalFunction) -> dict[str, str]:
        """A worker's whole environment: the function's variables, then Lambda's own."""
        name = self.function_name(function)
        return {
            **self._runtime.environment,
            "STREAMER_LOCAL_ACCOUNT_ID": self._account_id,
            **lambda_variables(self._runtime, function, name, self._region),
        }

    async def invoke(
        self,
        function: LocalFunction,
        event: dict[str, Any],
        *,
        expected_errors: Collection[str] = (),
        fresh: bool = False,
    ) -> Invocation:
        """Run one invocation in a worker of `function`; never raises for what the handler does.

        `fresh` is accepted for the interface's sake: the event always crosses a process
        boundary as JSON, as it does on Lambda.
        """
        request_id = str(uuid.uuid4())
        name = self.function_name(function)
        if self._closed:
            return Invocation(request_id, None, "ServiceUnavailable", "the stack is stopping")
        pool = self._pool(function)
        sink = worker_output.get()
        async with pool.slots:
            worker = await self._worker(function, pool, sink)
            if isinstance(worker, dict):
                return self._failed(name, request_id, worker, expected_errors)
            invocation = {
                "event": event,
                "request_id": request_id,
                "deadline_ms": time.time() * 1000 + function.timeout * 1000,
                "trace_id": trace_header(),
            }
            try:
                answer = await asyncio.wait_for(worker.call(invocation), function.timeout)
            except TimeoutError:
                # Lambda ends the whole environment of a timed-out invocation. Its last
                # lines still reach `sink`, until the stream ends with the process.
                self._discard(pool, worker)
                message = f"Task timed out after {function.timeout:.2f} seconds"
                logger.error("%s %s: %s", name, request_id, message)
                return Invocation(request_id, None, "Sandbox.Timedout", message)
            except WorkerGone as exc:
                self._discard(pool, worker)
                error = {"errorType": "Runtime.ExitError", "errorMessage": str(exc)}
                return self._failed(name, request_id, error, expected_errors)
            except asyncio.CancelledError:
                self._discard(pool, worker)
                raise
            worker.release()
            if worker.alive and not self._closed:
                pool.idle.append(worker)
            else:
                self._discard(pool, worker)
        if "error" in answer:
            return self._failed(name, request_id, answer["error"], expected_errors)
        return Invocation(request_id, answer.get("result"))

    async def _worker(
        self, function: LocalFunction, pool: _Pool, sink: Callable[[str], None] | None
    ) -> _Worker | dict[str, Any]:
        while pool.idle:
            worker = pool.idle.pop()
            if worker.alive:
                worker.stderr.sink = sink
                return worker
            pool.all.discard(worker)
        started = await _Worker.start(self._runtime, self.environment(function), sink)
        if isinstance(started, _Worker):
            pool.all.add(started)
            self.cold_starts[function.name] = self.cold_starts.get(function.name, 0) + 1
            logger.info(
                "%s: cold start, init %.0f ms", self.function_name(function), started.init_ms
            )
        return started

    def _discard(self, pool: _Pool, worker: _Worker) -> None:
        worker.kill()
        pool.all.discard(worker)
        self._ended.add(worker)

    @staticmethod
    def _failed(
        function_name: str,
        request_id: str,
        error: Mapping[str, Any],
        expected_errors: Collection[str],
    ) -> Invocation:
        error_type = str(error.get("errorType") or "Unhandled")
        message = str(error.get("errorMessage") or "")
        stack = error.get("stackTrace") or []
        log_failure(
            function_name,
            request_id,
            error_type,
            message,
            "".join(str(line) for line in stack),
            expected=message in expected_errors,
        )
        return Invocation(request_id, None, error_type, message)

    def shutdown(self) -> None:
        """End every worker: Lambda's environments do not outlive the stack."""
        self._closed = True
        for pool in self._pools.values():
            for worker in pool.all:
                worker.kill()
                self._ended.add(worker)
            pool.all.clear()
            pool.idle.clear()
        self._pools.clear()

    async def aclose(self) -> None:
        """`shutdown`, then wait for every worker ever ended, so none outlives the loop."""
        self.shutdown()
        ended, self._ended = self._ended, set()
        await asyncio.gather(*(worker.end() for worker in ended))
