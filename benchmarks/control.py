"""Servers under test run in their own fresh process, driven over a line-based JSON channel.

A separate process keeps the server's memory (read from /proc) free of the clients' and of earlier
benchmarks', and gives the local stack and the plain `websockets` baselines the same conditions:
one process each, clients elsewhere. The child answers on a duplicate of its original stdout and
points fd 1 at stderr, so log lines printed by the code under test never corrupt the channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import sys
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

Command = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

READY_TIMEOUT_S = 60.0
CALL_TIMEOUT_S = 120.0


def raise_fd_limit(wanted: int = 1 << 20) -> int:
    """Lift the soft open-files limit towards the hard one: 10,000 sockets need 10,000 fds."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from the kernel's own accounting."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, all its threads, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 overall, the 12th and 13th after "pid (comm)".
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _take_over_stdout() -> TextIO:
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    sys.stdout.flush()
    os.dup2(2, 1)
    return channel


async def serve(
    start: Callable[[], contextlib.AbstractAsyncContextManager[dict[str, Any]]],
    commands: Mapping[str, Command],
) -> None:
    """Child side: start the server, announce it, answer commands until told to quit or EOF."""
    raise_fd_limit()
    channel = _take_over_stdout()
    async with start() as info:
        channel.write(json.dumps({"ready": True, **info}) + "\n")
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                return
            request = json.loads(line)
            name = request.pop("cmd")
            if name == "quit":
                channel.write(json.dumps({"ok": True}) + "\n")
                return
            try:
                reply = await commands[name](request)
            except Exception as exc:
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            channel.write(json.dumps(reply) + "\n")


class ServerProcess:
    """Parent side: `async with ServerProcess("benchmarks.baselines") as server: server.info`."""

    def __init__(
        self,
        module: str,
        *args: str,
        env: Mapping[str, str] | None = None,
        graceful: bool = True,
    ) -> None:
        """`graceful=False` kills the server at the end instead of letting it shut down: a
        stack holding 10,000 sockets would otherwise run 10,000 `$disconnect`s, which no
        figure measures."""
        self.module = module
        self.graceful = graceful
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.info: dict[str, Any] = {}
        self._proc: asyncio.subprocess.Process | None = None
        # Closed in __aexit__: the file outlives this call by design.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("server not started")
        return self._proc.pid

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    async def __aenter__(self) -> ServerProcess:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            self.module,
            *self.args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._stderr,
            env=self.env,
            limit=1 << 24,
        )
        self.info = await self._read(wait_s=READY_TIMEOUT_S)
        return self

    async def _read(self, *, wait_s: float) -> dict[str, Any]:
        assert self._proc is not None
        assert self._proc.stdout is not None
        line = await asyncio.wait_for(self._proc.stdout.readline(), wait_s)
        if not line:
            raise RuntimeError(f"{self.module} exited early:\n{self.stderr_tail()}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"{self.module}: {reply['error']}")
        return reply

    async def call(
        self, cmd: str, *, wait_s: float = CALL_TIMEOUT_S, **kwargs: Any
    ) -> dict[str, Any]:
        """Run one command in the server and return its reply."""
        assert self._proc is not None
        assert self._proc.stdin is not None
        self._proc.stdin.write((json.dumps({"cmd": cmd, **kwargs}) + "\n").encode())
        await self._proc.stdin.drain()
        return await self._read(wait_s=wait_s)

    def stderr_tail(self, limit: int = 4000) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-limit:]

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None and not self.graceful:
            proc.kill()
            await proc.wait()
        if proc.returncode is None and self.graceful:
            with contextlib.suppress(Exception):
                await self.call("quit", wait_s=10)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        # Closing our end of stdin lets the subprocess transport finish while the loop still
        # runs; otherwise it is finalized after the loop closed, with a traceback.
        if proc.stdin is not None:
            proc.stdin.close()
            with contextlib.suppress(Exception):
                await proc.stdin.wait_closed()
        self._stderr.close()
