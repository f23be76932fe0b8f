"""Running an action's function, sync or ``async def``, optionally under a deadline.

A sync route must answer before API Gateway gives up on the integration (29 s). Python
cannot kill a thread, so a ``def`` action that overruns keeps its worker thread until it
returns; the caller gets TIMEOUT at the deadline regardless. An ``async def`` action is
cancelled at its deadline.

Those stuck threads are counted. Once every thread of the pool is held by one, a new
action could only wait in the pool's queue and "time out" without ever having run, so it
is refused with :class:`ActionThreadsExhausted` instead: the caller reports an internal
error and the log says why, rather than a TIMEOUT that blames the action.
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
_stuck = 0
"""Threads of the pool still running an action whose caller already gave up on it."""


class DeadlineExceeded(Exception):
    """The action did not finish within its deadline."""


class ActionThreadsExhausted(RuntimeError):
    """Every action thread is held by an overrun action: this one cannot run here.

    Raised rather than reported as TIMEOUT, because the action never started. A process in
    this state stays in it until those actions return; the processor retries the request
    (on another instance, most likely) and the router answers INTERNAL_ERROR.
    """


def stuck_threads() -> int:
    """How many action threads are held by actions that overran their deadline."""
    with _pool_lock:
        return _stuck


def _track_stuck(future: Future[Any]) -> None:
    global _stuck
    with _pool_lock:
        _stuck += 1

    def release(_done: Future[Any]) -> None:
        global _stuck
        with _pool_lock:
            _stuck -= 1

    future.add_done_callback(release)


def _exhausted(held: int) -> ActionThreadsExhausted:
    if held >= MAX_ACTION_THREADS:
        reason = f"all {MAX_ACTION_THREADS} action threads are held by overrun actions"
    else:
        reason = (
            f"no action thread came free before the deadline ({MAX_ACTION_THREADS} threads, "
            f"{held} held by overrun actions)"
        )
    return ActionThreadsExhausted(f"{reason}; the action was not started")


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


def _on_own_thread(call: Callable[[], Any], timeout: float | None) -> Any:
    """Run ``call`` on a thread of its own, abandoned (not killed) at the deadline."""
    future: Future[Any] = Future()

    def target() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(call())
        except BaseException as error:
            future.set_exception(error)

    threading.Thread(target=target, name="streamer-job", daemon=True).start()
    try:
        return future.result(timeout=timeout)
    except TimeoutError:
        if future.done():
            raise
        raise DeadlineExceeded from None


def run_action(
    spec: ActionSpec,
    args: tuple[Any, ...],
    timeout: float | None = None,
    *,
    own_thread: bool = False,
) -> Any:
    """Call ``spec.func(*args)`` and return its result; DeadlineExceeded after ``timeout`` s.

    ``own_thread`` runs a ``def`` action on a thread of its own instead of the shared pool.
    The processor runs one long job at a time and must not compete for the pool with short
    synchronous actions: where every function shares one process (the local stack), a few
    long jobs would otherwise leave the router's actions waiting for a thread.
    """
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
        if own_thread:
            return _on_own_thread(call, timeout)
    held = stuck_threads()
    if held >= MAX_ACTION_THREADS:
        raise _exhausted(held)
    future: Future[Any] = _executor().submit(call)
    try:
        return future.result(timeout=timeout)
    except TimeoutError:
        if future.done():
            raise
        if future.cancel():
            # Still queued at its deadline: the pool never had a thread for it.
            raise _exhausted(stuck_threads()) from None
        _track_stuck(future)
        raise DeadlineExceeded from None
