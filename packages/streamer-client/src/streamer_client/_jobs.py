"""The handle of one piece of work running on the server.

Progress is a "latest state" stream: the server numbers progress frames per request with ``seq``
and may coalesce them, so a frame whose ``seq`` is not above the last one delivered is stale or a
duplicate (a resend, a replay after reconnect) and is dropped. Callers therefore always see
progress in order and each update once, however the frames travelled.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from streamer_core import (
    TERMINAL_STATUSES,
    ErrorCode,
    ProgressFrame,
    RequestSnapshot,
    RequestStatus,
)

from streamer_client._errors import RequestTimeout, StreamerError, remote_error

__all__ = ["Job"]

# Enough history for a consumer that starts iterating late to see how the job got where it is.
_BACKLOG = 1000


class Job:
    """Work accepted by the server: follow its progress, await its result, or cancel it."""

    def __init__(
        self,
        request_id: str,
        action: str,
        *,
        canceller: Callable[[Job], Awaitable[RequestStatus]],
    ) -> None:
        self.id = request_id
        self.action = action
        self._canceller = canceller
        self._status = RequestStatus.QUEUED
        self._outcome: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._last_seq = 0
        self._backlog: deque[ProgressFrame] = deque(maxlen=_BACKLOG)
        self._listeners: list[asyncio.Queue[ProgressFrame | None]] = []

    def __repr__(self) -> str:
        return f"<Job {self.action} id={self.id} status={self._status}>"

    @property
    def status(self) -> RequestStatus:
        """The last state the server reported (or that the client inferred from a final frame)."""
        return self._status

    @property
    def latest_progress(self) -> ProgressFrame | None:
        """The newest progress update, for callers that poll rather than iterate."""
        return self._backlog[-1] if self._backlog else None

    def done(self) -> bool:
        """Whether the job reached a final state (result, error or cancellation)."""
        return self._outcome.done()

    async def progress(self) -> AsyncIterator[ProgressFrame]:
        """Yield updates in ``seq`` order, those already received first; ends with the job.

        The iterator ends quietly on failure too; :meth:`result` is where the error is raised,
        so that one place decides how a job ended.
        """
        queue: asyncio.Queue[ProgressFrame | None] = asyncio.Queue()
        for frame in self._backlog:
            queue.put_nowait(frame)
        if self.done():
            queue.put_nowait(None)
        else:
            self._listeners.append(queue)
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                yield item
        finally:
            if queue in self._listeners:
                self._listeners.remove(queue)

    async def result(self, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        """Wait for the final result; raises the typed remote error when the job failed.

        A timeout here only stops waiting: the job goes on and can be awaited again.
        """
        try:
            return await asyncio.wait_for(asyncio.shield(self._outcome), timeout)
        except TimeoutError:
            if self._outcome.done():
                raise
            raise RequestTimeout(
                f"job {self.id} ({self.action}) not finished after {timeout} s"
            ) from None

    async def cancel(self) -> RequestStatus:
        """Ask the server to cancel; returns the status it reported.

        A queued job is cancelled at once; a running one stops at its next progress report, and
        :meth:`result` then raises :class:`~streamer_client.RequestCancelledError`.
        """
        if self.done():
            return self._status
        return await self._canceller(self)

    # The methods below are driven by the client as frames arrive.

    def _acknowledge(self, status: RequestStatus) -> None:
        if not self.done() and status not in TERMINAL_STATUSES:
            self._status = status

    def _deliver_progress(self, frame: ProgressFrame) -> bool:
        if self.done() or frame.seq <= self._last_seq:
            return False
        self._last_seq = frame.seq
        self._status = RequestStatus.PROCESSING
        self._backlog.append(frame)
        for queue in self._listeners:
            queue.put_nowait(frame)
        return True

    def _resolve(self, result: Any) -> None:
        if self.done():
            return
        self._status = RequestStatus.COMPLETED
        self._outcome.set_result(result)
        self._end_listeners()

    def _fail(self, error: BaseException) -> None:
        if self.done():
            return
        if isinstance(error, StreamerError) and getattr(error, "code", None) is ErrorCode.CANCELLED:
            self._status = RequestStatus.CANCELLED
        elif not isinstance(error, RequestTimeout):
            self._status = RequestStatus.FAILED
        self._outcome.set_exception(error)
        # Nobody may ever await a job that was submitted and dropped; do not warn about it.
        self._outcome.exception()
        self._end_listeners()

    def _apply_snapshot(self, snapshot: RequestSnapshot) -> None:
        """Catch up with the server after missed frames, without repeating what was delivered."""
        if self.done():
            return
        progress = snapshot.progress
        if progress is not None and progress.seq > self._last_seq:
            self._deliver_progress(
                ProgressFrame(
                    request_id=self.id,
                    percentage=progress.percentage,
                    message=progress.message,
                    metadata=progress.metadata,
                    seq=progress.seq,
                )
            )
        if snapshot.status is RequestStatus.COMPLETED:
            self._resolve(snapshot.result)
        elif snapshot.status in (RequestStatus.FAILED, RequestStatus.CANCELLED):
            info = snapshot.error
            if info is not None:
                error = remote_error(info.code, info.message, info.details, request_id=self.id)
            elif snapshot.status is RequestStatus.CANCELLED:
                error = remote_error(
                    ErrorCode.CANCELLED, "request was cancelled", request_id=self.id
                )
            else:
                error = remote_error(ErrorCode.INTERNAL_ERROR, "request failed", request_id=self.id)
            self._fail(error)
            self._status = snapshot.status
        else:
            self._status = snapshot.status

    def _end_listeners(self) -> None:
        for queue in self._listeners:
            queue.put_nowait(None)
        self._listeners.clear()
