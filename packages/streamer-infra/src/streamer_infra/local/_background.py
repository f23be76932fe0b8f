"""A `LocalStack` on its own thread and event loop, for synchronous callers.

Tests and benchmarks drive the stack with clients on their own event loop (or none);
serving from a separate loop keeps the two independent, as a real server would be, so a
test's loop scope never has to match the stack's.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType

from streamer_infra.local._stack import LocalStack, LocalStackConfig

__all__ = ["BackgroundStack"]


class BackgroundStack:
    """`with BackgroundStack(config) as stack:` serves until the block ends."""

    def __init__(
        self, config: LocalStackConfig | None = None, *, start_timeout: float = 60
    ) -> None:
        self.stack = LocalStack(config)
        self._start_timeout = start_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="streamer-local-stack", daemon=True)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> LocalStack:
        self._thread.start()
        if not self._ready.wait(self._start_timeout):
            raise TimeoutError(f"the local stack did not start in {self._start_timeout} s")
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self.stack

    def stop(self) -> None:
        """Stop the stack (clients get 1001, every `$disconnect` runs) and join the thread."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(stop.set)
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.stack.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.stack.stop()
