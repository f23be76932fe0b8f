"""Running an action's function, sync or ``async def``, under a deadline.

An ``async def`` action is cancelled at its deadline. Python cannot kill a thread, so a
``def`` action is bounded in one of two ways:

- on a thread of its own, abandoned (not killed) at the deadline: the processor's way, which
  must record TIMEOUT and tell the client while Lambda still lets it write;
- in place, on the calling thread, while the caller watches the clock: the router's way. A
  synchronous action is short by contract, and running it where the invocation already is
  saves two thread hand-offs per message (a fifth of a local round trip). If it overruns,
  the router's watchdog answers TIMEOUT at the deadline (:mod:`.dispatch`) and the action
  keeps its invocation until it returns or Lambda ends it, which is also what frees the
  thread: nothing is left running in a container that has moved on to other work.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any

from streamer_handlers._app import ActionSpec


class DeadlineExceeded(Exception):
    """The action did not finish within its deadline."""


# asyncio is imported where an ``async def`` action needs it: a router whose actions are all
# plain functions does not pay for it at cold start.


async def _bounded(coroutine: Coroutine[Any, Any, Any], seconds: float | None) -> Any:
    import asyncio

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
    import asyncio

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
    import asyncio

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
    in_place: bool = False,
) -> Any:
    """Call ``spec.func(*args)`` and return its result; DeadlineExceeded after ``timeout`` s.

    ``in_place`` runs a ``def`` action on the calling thread and leaves its deadline to the
    caller's watchdog; otherwise a ``def`` action with a timeout gets a thread of its own.
    An ``async def`` action runs on a private loop on the calling thread either way (on a
    thread of its own if this thread already runs a loop) and is cancelled at the deadline.
    """
    if spec.is_coroutine:

        def run_bounded() -> Any:
            return _run_coroutine(_bounded(spec.func(*args), timeout))

        if not _in_running_loop():
            return run_bounded()
        return _on_own_thread(run_bounded, None)

    def call() -> Any:
        return spec.func(*args)

    if timeout is None or in_place:
        return call()
    return _on_own_thread(call, timeout)
