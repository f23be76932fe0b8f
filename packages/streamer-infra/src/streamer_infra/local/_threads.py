"""A bounded pool of daemon worker threads.

`concurrent.futures.ThreadPoolExecutor` joins its workers when the interpreter exits, so a
job still running in the processor (it may legitimately run for 15 minutes) would keep
`streamer dev` alive long after Ctrl-C. Lambda simply freezes such work; daemon workers
are the closest a process can come: they never hold up the exit.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["DaemonPool"]

T = TypeVar("T")

_Job = tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]


class DaemonPool:
    """Runs callables on at most `max_workers` daemon threads, started on demand."""

    def __init__(self, max_workers: int, name: str) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._max_workers = max_workers
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers = 0
        self._idle = 0
        self._pending = 0
        self._closed = False

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._name} pool is shut down")
            self._jobs.put((future, fn, args))
            self._pending += 1
            if self._pending > self._idle and self._workers < self._max_workers:
                self._workers += 1
                threading.Thread(
                    target=self._work, name=f"{self._name}-{self._workers}", daemon=True
                ).start()
        return future

    def shutdown(self) -> None:
        """Refuse new work and let idle workers end; running calls finish on their own."""
        with self._lock:
            self._closed = True
            workers = self._workers
        for _ in range(workers):
            self._jobs.put(None)

    def _work(self) -> None:
        with self._lock:
            self._idle += 1
        while True:
            job = self._jobs.get()
            with self._lock:
                self._idle -= 1
                if job is not None:
                    self._pending -= 1
            if job is None:
                return
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                self._free()
                continue
            try:
                result = fn(*args)
            except BaseException as exc:
                self._free()
                future.set_exception(exc)
            else:
                self._free()
                future.set_result(result)

    def _free(self) -> None:
        """Counted idle before the future's callbacks run: a caller that hears the job is
        done and submits the next at once must find this worker free, not start another."""
        with self._lock:
            self._idle += 1
