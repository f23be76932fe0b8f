"""Progress reports from a running action, coalesced before they reach clients.

An action may call ``report`` in a tight loop; every emitted report costs a DynamoDB write
and one management-API call per subscriber, so at most ``per_second`` reports a second
leave the reporter. A report that arrives too soon is held back and replaced by any newer
one (the newest always wins); a timer sends it when the interval has passed, so a job that
goes quiet after a held-back report still shows its latest state. The first report of
100% is never held back (later ones at 100% are coalesced like any other), and ``finish``
sends whatever is still held before the final frame. A report that could not be stored or
delivered stays held, so ``finish`` (or the next report) tries it again instead of losing
the 100% a client waits for.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import JsonValue, TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from streamer_core import ProgressFrame

from streamer_handlers._errors import Cancelled
from streamer_handlers._lambda.observability import logger
from streamer_handlers._lambda.timers import Scheduler, TimerHandle, thread_timer

__all__ = [
    "Emitter",
    "ProgressReporter",
    "Scheduler",
    "TimerHandle",
    "thread_timer",
]

_EPSILON = 1e-6
"""Clock arithmetic in floats: 100.1 - 100.0 is a hair under 0.1, and must count as due."""
_JSON_OBJECT: TypeAdapter[dict[str, JsonValue]] = TypeAdapter(dict[str, JsonValue])


Emitter = Callable[[ProgressFrame], bool]
"""Stores and delivers one frame; returns True when the request must stop (cancelled)."""


@dataclass
class _Pending:
    percentage: float
    message: str | None
    metadata: dict[str, Any] = field(default_factory=dict)


class ProgressReporter:
    """What an asynchronous action receives to report how far it is.

    ``report`` raises :class:`Cancelled` once the client's ``cancel`` has been seen, which
    is how cancellation reaches code that knows nothing about the protocol.
    """

    def __init__(
        self,
        request_id: str,
        emit: Emitter,
        *,
        per_second: float = 10.0,
        start_seq: int = 0,
        clock: Callable[[], float] = time.monotonic,
        schedule: Scheduler = thread_timer,
    ) -> None:
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        self.request_id = request_id
        self._emit = emit
        self._interval = 1.0 / per_second
        self._seq = start_seq
        self._clock = clock
        self._schedule = schedule
        self._lock = threading.RLock()
        self._pending: _Pending | None = None
        self._last_sent: float | None = None
        self._timer: TimerHandle | None = None
        self._cancelled = False
        self._closed = False
        self._full_sent = False
        self._last_frame: ProgressFrame | None = None

    @property
    def seq(self) -> int:
        """Sequence number of the last emitted report (0 before the first)."""
        return self._seq

    @property
    def last_frame(self) -> ProgressFrame | None:
        """The last report that was stored and delivered (what ``status`` will show)."""
        return self._last_frame

    @property
    def cancelled(self) -> bool:
        """Whether a cancellation has been seen (the next ``report`` raises)."""
        return self._cancelled

    def report(self, percentage: float, message: str | None = None, **metadata: Any) -> None:
        """Report ``percentage`` (0..100, clamped) with an optional message and JSON metadata."""
        value = float(percentage)
        if math.isnan(value):
            raise ValueError("percentage must be a number, got NaN")
        value = min(100.0, max(0.0, value))
        if message is not None and not isinstance(message, str):
            raise TypeError("message must be a string or None")
        try:
            checked = _JSON_OBJECT.validate_python(metadata)
        except PydanticValidationError:
            raise TypeError("progress metadata must be JSON values") from None
        with self._lock:
            if self._cancelled:
                raise Cancelled(self.request_id)
            if self._closed:
                return
            self._pending = _Pending(value, message, dict(checked))
            now = self._clock()
            due = self._last_sent is None or now - self._last_sent >= self._interval - _EPSILON
            first_full = value >= 100.0 and not self._full_sent
            if first_full or due:
                self._send_pending(now)
            elif self._timer is None:
                wait = self._interval - (now - (self._last_sent or now))
                self._timer = self._schedule(max(0.0, wait), self._on_timer)
            if self._cancelled:
                raise Cancelled(self.request_id)

    def flush(self) -> None:
        """Send the held-back report now, if there is one."""
        with self._lock:
            if self._pending is not None and not self._closed:
                self._send_pending(self._clock())

    def finish(self, *, flush: bool = True) -> None:
        """Stop; send what is held back first unless ``flush`` is False (the job failed)."""
        with self._lock:
            if flush:
                self.flush()
            self._pending = None
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
            self.flush()

    def _send_pending(self, now: float) -> None:
        pending = self._pending
        if pending is None:
            return
        self._pending = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._seq += 1
        self._last_sent = now
        frame = ProgressFrame(
            request_id=self.request_id,
            percentage=pending.percentage,
            message=pending.message,
            metadata=pending.metadata,
            seq=self._seq,
        )
        try:
            stop = self._emit(frame)
        except Exception:
            logger.exception(
                "progress could not be recorded", extra={"request_id": self.request_id}
            )
            # Held again for finish() or the next report, unless a newer one replaced it. A
            # retry takes a new seq: the failed attempt may have been stored already.
            if self._pending is None:
                self._pending = pending
            return
        self._last_frame = frame
        if pending.percentage >= 100.0:
            self._full_sent = True
        if stop:
            self._cancelled = True
