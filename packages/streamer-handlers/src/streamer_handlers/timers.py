"""Delayed callbacks, the seam through which progress flushes are scheduled.

Kept apart from :mod:`.progress` so that the runtime, which every function imports, can
name the default scheduler without loading the protocol's models: ``$connect`` and
``$disconnect`` never build a frame and should not pay for pydantic at cold start.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol


class TimerHandle(Protocol):
    """A scheduled callback that can still be called off."""

    def cancel(self) -> None:
        """Make sure the callback does not run (no effect once it ran)."""
        ...


Scheduler = Callable[[float, Callable[[], None]], TimerHandle]
"""``schedule(delay_seconds, callback)``; tests replace the thread timer with a manual one."""


def thread_timer(delay: float, callback: Callable[[], None]) -> TimerHandle:
    """Run ``callback`` after ``delay`` seconds on a daemon thread."""
    timer = threading.Timer(delay, callback)
    timer.daemon = True
    timer.start()
    return timer
