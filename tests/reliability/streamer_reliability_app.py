"""The application the reliability stacks serve: the demo actions plus workers that die.

The stacks name it with STREAMER_APP (tests/reliability/conftest.py puts this directory on
sys.path), exactly as a user's application would be named. What each action did on which
attempt is recorded here, in the process the stack runs its functions in, so a test can
tell how often an action body really ran, which no frame would reveal.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from streamer_handlers import ProgressReporter, Request, Streamer
from streamer_handlers.demo import echo, generate_report

HANG_SECONDS = 120.0
"""A hung worker is released by its test; this only ends a hang a broken test forgot."""

app = Streamer()
app.action("echo")(echo)
app.action("generate_report", asynchronous=True)(generate_report)

_lock = threading.Lock()
ATTEMPTS: Counter[str] = Counter()
"""Request id -> how many times its action body started."""
FINISHED: Counter[str] = Counter()
"""Request id -> how many times its action body returned a result."""
_hung: list[threading.Event] = []


def _attempt(request: Request) -> int:
    with _lock:
        ATTEMPTS[request.id] += 1
        return ATTEMPTS[request.id]


def _finished(request: Request) -> None:
    with _lock:
        FINISHED[request.id] += 1


def _hang() -> None:
    """Block the invocation's thread until released, the way a stuck worker never returns.

    Called from an ``async def`` action, it also blocks the event loop the action runs on,
    so not even the processor's own deadline can interrupt it: only the function timeout
    ends the invocation, which is how Lambda kills a worker.
    """
    gate = threading.Event()
    with _lock:
        _hung.append(gate)
    gate.wait(HANG_SECONDS)


def release_hung_workers() -> int:
    """Let every hung worker's thread run on; returns how many were hung."""
    with _lock:
        gates, _hung[:] = list(_hung), []
    for gate in gates:
        gate.set()
    return len(gates)


def hung_workers() -> int:
    with _lock:
        return len(_hung)


@app.action("slow_echo")
def slow_echo(request: Request) -> Any:
    """A synchronous action that takes a while, recording that it ran."""
    _attempt(request)
    _idle.wait(0.2)
    _finished(request)
    return request.payload


_idle = threading.Event()


@app.action("crash_once", asynchronous=True)
def crash_once(request: Request, progress: ProgressReporter) -> Any:
    """Raises on its first attempt (a bug hit by a transient state), succeeds after."""
    attempt = _attempt(request)
    progress.report(10 * attempt, f"attempt {attempt}")
    if attempt == 1:
        raise RuntimeError("the worker crashed")
    _finished(request)
    return {"attempt": attempt}


@app.action("crash_always", asynchronous=True)
def crash_always(request: Request, progress: ProgressReporter) -> Any:
    """Raises on every attempt: a poison request."""
    attempt = _attempt(request)
    progress.report(10 * attempt, f"attempt {attempt}")
    raise RuntimeError("the worker crashed again")


@app.action("killed_once", asynchronous=True)
async def killed_once(request: Request, progress: ProgressReporter) -> Any:
    """Its first worker hangs until the function timeout kills it; the next one succeeds.

    Once released, the first worker carries on and returns late, as a worker that was only
    slow (not dead) would: its result must never become a second completion.
    """
    attempt = _attempt(request)
    progress.report(10 * attempt, f"attempt {attempt}")
    if attempt == 1:
        _hang()
    _finished(request)
    return {"attempt": attempt}


@app.action("killed_always", asynchronous=True)
async def killed_always(request: Request, progress: ProgressReporter) -> Any:
    """Every worker hangs until killed: the message ends in the dead-letter queue."""
    attempt = _attempt(request)
    progress.report(10 * attempt, f"attempt {attempt}")
    _hang()
    raise RuntimeError("released after its worker was killed")
