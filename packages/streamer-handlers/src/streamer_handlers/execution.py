"""Running an action's function, sync or ``async def``, optionally under a deadline.

A sync route must answer before API Gateway gives up on the integration (29 s). Python
cannot kill a thread, so a ``def`` action that overruns keeps its worker thread until it
returns; the caller gets TIMEOUT at the deadline regardless. An ``async def`` action is
cancelled at its deadline.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from .app import ActionSpec

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
MAX_ACTION_THREADS = 64


class DeadlineExceeded(Exception):
    """The action did not finish within its deadline."""


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=MAX_ACTION_THREADS, thread_name_prefix="streamer-action"
            )
        return _pool


async def _bounded(coroutine: Coroutine[Any, Any, Any], seconds: float | None) -> Any:
    task = asyncio.ensure_future(coroutine)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise DeadlineExceeded
    return task.result()


def _run_coroutine(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run on a private event loop, leaving the thread's current loop alone.

    ``asyncio.run`` would set the thread's loop to None on exit, which breaks any code in
    the same thread (a test runner, an embedding server) that later calls
    ``asyncio.get_event_loop()``.
    """
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        try:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


def _in_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def run_action(spec: ActionSpec, args: tuple[Any, ...], timeout: float | None = None) -> Any:
    """Call ``spec.func(*args)`` and return its result; DeadlineExceeded after ``timeout`` s."""
    call: Callable[[], Any]
    if spec.is_coroutine:

        def call() -> Any:
            return _run_coroutine(_bounded(spec.func(*args), timeout))

        if not _in_running_loop():
            return call()
    else:

        def call() -> Any:
            return spec.func(*args)

        if timeout is None:
            return call()
    future: Future[Any] = _executor().submit(call)
    try:
        return future.result(timeout=timeout)
    except TimeoutError:
        if future.done():
            raise
        future.cancel()
        raise DeadlineExceeded from None
