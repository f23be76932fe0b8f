"""Delayed callbacks, the seam through which progress flushes and deadlines are scheduled.

Kept apart from :mod:`.progress` so that the runtime, which every function imports, can
name the default scheduler without loading the protocol's models: ``$connect`` and
``$disconnect`` never build a frame and should not pay for pydantic at cold start.

The router arms a timer for every synchronous action and nearly always calls it off a
moment later, so arming must be cheap: one process-wide thread keeps the timers in a heap,
and arming one costs a heap push, plus a wake-up of that thread only when the new timer
comes due before the thread would wake anyway. A timer that comes due runs on a thread of
its own, as ``threading.Timer`` would, so a callback that blocks (a delivery, a DynamoDB
write) never holds up the others.
"""

from __future__ import annotations

import heapq
import itertools
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Scheduler", "TimerHandle", "TimerThread", "thread_timer"]


class TimerHandle(Protocol):
    """A scheduled callback that can still be called off."""

    def cancel(self) -> None:
        """Make sure the callback does not run (no effect once it ran)."""
        ...


Scheduler = Callable[[float, Callable[[], None]], TimerHandle]
"""``schedule(delay_seconds, callback)``; tests replace the thread timer with a manual one."""


class _Timer:
    __slots__ = ("_owner", "callback", "cancelled", "due")

    def __init__(self, due: float, callback: Callable[[], None], owner: TimerThread) -> None:
        self.due = due
        self.callback = callback
        self.cancelled = False
        self._owner = owner

    def cancel(self) -> None:
        self._owner._cancel(self)


class TimerThread:
    """Timers kept in one heap, watched by one daemon thread started on first use.

    A called-off timer at the head of the heap leaves it at once; one further in stays until
    it comes due or until such timers outnumber the live ones, when the heap is rebuilt
    without them. The heap never holds more than twice what is live (plus a small floor).
    The thread wakes for the earliest timer that was live when it went to sleep or, with
    none left, once at the latest due time armed (see ``_wake_time``).
    """

    COMPACT_FLOOR = 1024

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, _Timer]] = []
        self._order = itertools.count()
        self._cancelled = 0
        self._wake = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._sleeping_until = math.inf
        """When the watching thread wakes next on its own: arming a later timer needs no call."""
        self._latest_due = -math.inf
        """The latest due time armed so far: with the heap empty, the thread sleeps until then."""
        # A forked child has no watching thread: it starts its own, with the timers it owns.
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self._wake = threading.Condition(threading.Lock())
        self._thread = None
        self._sleeping_until = math.inf
        self._latest_due = -math.inf

    def __call__(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        timer = _Timer(self._clock() + max(0.0, delay), callback, self)
        with self._wake:
            heapq.heappush(self._heap, (timer.due, next(self._order), timer))
            self._latest_due = max(self._latest_due, timer.due)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="streamer-timers", daemon=True
                )
                self._thread.start()
            elif timer.due < self._sleeping_until:
                self._wake.notify()
        return timer

    def pending(self) -> int:
        """Timers neither run nor called off."""
        with self._wake:
            return len(self._heap) - self._cancelled

    def _cancel(self, timer: _Timer) -> None:
        with self._wake:
            if timer.cancelled:
                return
            timer.cancelled = True
            self._cancelled += 1
            heap = self._heap
            # Timers are mostly called off in the order they were armed: dropping them from
            # the head at once keeps the watching thread from waking for them later.
            while heap and heap[0][2].cancelled:
                heapq.heappop(heap)
                self._cancelled -= 1
            if self._cancelled > max(self.COMPACT_FLOOR, len(heap) // 2):
                self._heap = [entry for entry in self._heap if not entry[2].cancelled]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def _wake_time(self, now: float) -> float:
        """The head of the heap; with none, the latest due time armed, if still ahead.

        Timers are mostly armed and called off before this thread runs again (on one CPU it
        runs only once the arming thread blocks), so it often finds the heap empty. Sleeping
        for good then would make the next arming wake it, and the one after: one wake-up per
        timer. Sleeping until the latest due time armed instead costs one idle wake-up per
        timer period, and every timer armed meanwhile for as long comes due after it.
        """
        if self._heap:
            return self._heap[0][0]
        return self._latest_due if self._latest_due > now else math.inf

    def _watch(self) -> None:
        while True:
            due: list[_Timer] = []
            with self._wake:
                while not due:
                    now = self._clock()
                    while self._heap and self._heap[0][0] <= now:
                        timer = heapq.heappop(self._heap)[2]
                        if timer.cancelled:
                            self._cancelled -= 1
                        else:
                            # Marked before it runs, so a late cancel() does not count it twice.
                            timer.cancelled = True
                            due.append(timer)
                    if due:
                        break
                    until = self._wake_time(now)
                    self._sleeping_until = until
                    self._wake.wait(None if until == math.inf else until - now)
                self._sleeping_until = -math.inf  # awake: whoever arms a timer now wakes nobody
            for timer in due:
                threading.Thread(target=timer.callback, name="streamer-timer", daemon=True).start()


thread_timer: Scheduler = TimerThread()
"""The process-wide scheduler: ``thread_timer(delay, callback)`` runs ``callback`` after
``delay`` seconds on a daemon thread of its own."""
