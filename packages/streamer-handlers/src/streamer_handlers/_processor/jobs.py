"""Running one queued request from an SQS record, exactly once.

The claim is a conditional write, so a duplicate delivery of a running request finds it
taken and goes back to the queue, and a delivery of a finished one is dropped. The claim's
lease lasts as long as this invocation can (Lambda's remaining time): once it lapses, the
worker is certainly gone and a redelivery can take the request over. An attempt that
crashes hands its claim back at once (``RequestStore.release``), so SQS's next delivery retries.

An action runs under a deadline of its own ``timeout`` or Lambda's remaining time less
:data:`PROCESSOR_MARGIN_SECONDS`, whichever comes first: Lambda kills an invocation that
overruns without letting it write anything, so the processor must stop first and still have
time to record TIMEOUT and tell the client. For the same reason a record is not started
when less than the margin is left; it goes back to the queue. On the last attempt a
watchdog thread also fails the request if the attempt's own thread is stuck past the
deadline (an action that blocks its event loop cannot be interrupted).

A failure on the last delivery SQS will make (STREAMER_MAX_RECEIVE_COUNT, the queue's
maxReceiveCount) marks the request FAILED and tells its followers
(:func:`.failure.fail_and_notify`), wherever it happens, so nothing stays QUEUED or
PROCESSING after the message moves to the dead-letter queue.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from streamer_core import (
    TERMINAL_STATUSES,
    CompleteFrame,
    ErrorCode,
    ErrorInfo,
    FrameTooLargeError,
    ProgressFrame,
    ProgressState,
    RequestStatus,
    StatusFrame,
    encode,
)

from streamer_handlers._action_runner import DeadlineExceeded, run_action
from streamer_handlers._delivery.fanout import deliver_to_request
from streamer_handlers._delivery.frames import INTERNAL_MESSAGE, error_frame, unknown_action
from streamer_handlers._errors import ActionError, Cancelled
from streamer_handlers._lambda.api_events import receive_count
from streamer_handlers._lambda.observability import (
    PROCESSING_LATENCY,
    PROGRESS_DELIVERED,
    add_log_keys,
    count,
    logger,
    milliseconds,
)
from streamer_handlers._processor.failure import fail_and_notify
from streamer_handlers._progress import ProgressReporter
from streamer_handlers._request import Request

if TYPE_CHECKING:
    from streamer_core.storage import RequestKey, RequestRecord

    from streamer_handlers._app import ActionSpec
    from streamer_handlers._lambda.runtime import Runtime
    from streamer_handlers._lambda.timers import TimerHandle

PROCESSOR_MARGIN_SECONDS = 10.0
"""Time kept back from Lambda's remaining time to record the outcome and deliver the
final frame (a DynamoDB write and one management-API call per follower, with retries)."""
LONGEST_REQUEST_ID = "0" * 128
"""The longest id a ``status`` frame can answer (ID_PATTERN allows 128 characters)."""


class RequestBusy(Exception):
    """Another worker holds a live claim on the request: leave the message for later."""


class OutOfTime(Exception):
    """Too little of the invocation is left to start this record; SQS delivers it again."""


class _Failure(Exception):
    """A definitive failure chosen by the processor (action error, timeout, bad result)."""

    def __init__(self, code: ErrorCode, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.info = ErrorInfo(code=code, message=message, details=details or {})


def seconds_left(runtime: Runtime, context: Any) -> float:
    """Seconds before Lambda ends this invocation; the configured timeout without a context."""
    left = float(runtime.settings.processor_timeout)
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining):
        reported = remaining() / 1000
        if math.isfinite(reported):
            left = min(left, reported)
    return left


def _lease_seconds(runtime: Runtime, context: Any) -> float:
    return max(1.0, seconds_left(runtime, context))


def action_deadline(spec: ActionSpec, seconds_left: float) -> float:
    """The action's own timeout, cut short so the outcome can be written before Lambda stops."""
    deadline = seconds_left - PROCESSOR_MARGIN_SECONDS
    if spec.timeout is not None:
        deadline = min(deadline, spec.timeout)
    return max(0.001, deadline)


def _permissions(message_attributes: Mapping[str, Any]) -> frozenset[str]:
    attribute = message_attributes.get("permissions") or {}
    value = attribute.get("stringValue") or attribute.get("StringValue") or ""
    return frozenset(p for p in str(value).split() if p != "-")


class RequestRun:
    """One attempt at one request: the action, its progress, and its final frame."""

    def __init__(
        self,
        runtime: Runtime,
        record: RequestRecord,
        spec: ActionSpec,
        *,
        permissions: frozenset[str],
        seconds_left: float = math.inf,
    ) -> None:
        self.runtime = runtime
        self._ends_at = time.monotonic() + seconds_left
        self._gone: set[str] = set()
        """Followers that answered 410: never posted to again by this run."""
        self._to_drop: set[str] = set()
        """Of those, the ones the request item still lists: its next write removes them."""
        self._lock = threading.Lock()
        self.record = record
        self.spec = spec
        self.key = record.key
        self.request = Request(
            id=record.key.request_id,
            action=record.action,
            payload=dict(record.payload),
            metadata=dict(record.metadata),
            user_id=record.key.user_id,
            tenant_id=record.key.tenant_id,
            permissions=permissions,
            connection_id=record.connection_id,
        )
        self.reporter = ProgressReporter(
            record.key.request_id,
            self._emit_progress,
            per_second=runtime.settings.progress_per_second,
            start_seq=record.progress.seq if record.progress else 0,
            clock=runtime.clock,
            schedule=runtime.schedule,
        )

    def _emit_progress(self, frame: ProgressFrame) -> bool:
        """Store, then deliver; a cancelled request, or one no longer ours, stops the action.

        The write that stores the progress returns the followers to send it to, and takes
        out those found gone since the last one. The client that cancelled gets ``error``
        CANCELLED next, not more progress.
        """
        state = ProgressState(
            percentage=frame.percentage,
            message=frame.message,
            metadata=frame.metadata,
            seq=frame.seq,
        )
        with self._lock:
            drop = frozenset(self._to_drop)
        updated = self.runtime.storage.requests.record_progress(self.key, state, drop=drop)
        if updated is None or updated.cancel_requested:
            return True
        with self._lock:
            self._to_drop -= drop
        self._deliver(updated, frame)
        count(PROGRESS_DELIVERED)
        return False

    def _deliver(self, record: RequestRecord, frame: BaseModel) -> None:
        """To the followers the last write returned, minus those that proved gone."""
        with self._lock:
            gone = frozenset(self._gone)
        report = deliver_to_request(self.runtime, record, frame, skip=gone)
        if report.gone:
            with self._lock:
                self._gone.update(report.gone)
                self._to_drop.update(report.gone)

    def _notify(self, record: RequestRecord, frame: BaseModel) -> None:
        try:
            self._deliver(record, frame)
        except Exception:
            logger.exception("could not deliver the final frame")

    def execute(self) -> Any:
        """Run the action and return its result, translating how it ended."""
        deadline = action_deadline(self.spec, self._ends_at - time.monotonic())
        try:
            return run_action(self.spec, (self.request, self.reporter), deadline)
        except ActionError as error:
            raise _Failure(error.code, error.message, error.details) from None
        except DeadlineExceeded:
            raise _Failure(
                ErrorCode.TIMEOUT, f"action did not finish within {deadline:g} s"
            ) from None

    def complete(self, result: Any) -> None:
        """Store the result and send ``complete``; a result that cannot be sent is a failure.

        The result must also fit in the ``status`` frame that returns it after a reconnect,
        which wraps it in more fields than ``complete`` does: a result that fits the one
        but not the other would be delivered once and then be lost with its connection.
        """
        try:
            frame = CompleteFrame(request_id=self.key.request_id, result=result)
            data = encode(frame)
            self._check_status_fits(result)
        except PydanticValidationError:
            raise _Failure(ErrorCode.INTERNAL_ERROR, "the action's result is not JSON") from None
        except FrameTooLargeError as error:
            raise _Failure(
                ErrorCode.INTERNAL_ERROR,
                "the action's result is too large: with the request's state it would take "
                f"{error.size} bytes, over the {error.limit}-byte frame limit",
                {"size": error.size, "limit": error.limit},
            ) from None
        from streamer_core.storage import IllegalTransitionError

        try:
            record = self.runtime.storage.requests.complete(self.key, result)
        except IllegalTransitionError as error:
            # Failed by the watchdog (or cancelled) while the action ran on: its followers
            # already have their final frame, and this result arrived too late to count.
            logger.warning("late result discarded", extra={"status": str(error.current)})
            return
        logger.info("request completed", extra={"bytes": len(data)})
        self._notify(record, frame)

    def _check_status_fits(self, result: Any) -> None:
        """Raise FrameTooLargeError unless ``status`` could return this request once done."""
        finished = dataclasses.replace(self.record, status=RequestStatus.COMPLETED, result=result)
        progress = self.reporter.last_frame
        if progress is not None:
            state = ProgressState(
                percentage=progress.percentage,
                message=progress.message,
                metadata=progress.metadata,
                seq=progress.seq,
            )
            finished = dataclasses.replace(finished, progress=state)
        encode(StatusFrame(request_id=LONGEST_REQUEST_ID, snapshot=finished.snapshot()))

    def fail(self, info: ErrorInfo) -> None:
        """Mark the request FAILED and send ``error`` to its followers."""
        with self._lock:
            gone = frozenset(self._gone)
        fail_and_notify(self.runtime, self.key, info, skip=gone)

    def seconds_left(self) -> float:
        """Seconds before Lambda ends the invocation running this attempt."""
        return self._ends_at - time.monotonic()

    def give_up(self) -> None:
        """Fail the request from the watchdog's thread: the attempt's own thread is stuck.

        Only the last attempt has a watchdog: an earlier one that Lambda kills is simply
        retried, but after the last one nothing would ever run for this request again. The
        reporter is left alone, since the stuck thread may be holding its lock.
        """
        logger.error("request still running as its last attempt runs out of time")
        info = ErrorInfo(
            code=ErrorCode.TIMEOUT,
            message="the request did not finish before its last attempt ran out of time",
        )
        try:
            fail_and_notify(self.runtime, self.key, info)
        except Exception:
            logger.exception("a stuck request could not be failed")

    def cancel(self) -> None:
        """Mark the request CANCELLED after the action stopped on a cancel."""
        from streamer_core.storage import IllegalTransitionError

        try:
            record = self.runtime.storage.requests.mark_cancelled(self.key)
        except IllegalTransitionError as error:
            logger.info("request stopped without ownership", extra={"status": str(error.current)})
            return
        frame = error_frame(ErrorCode.CANCELLED, "request cancelled", self.key.request_id)
        self._notify(record, frame)


def process_message(
    runtime: Runtime,
    body: str,
    attributes: Mapping[str, Any],
    message_attributes: Mapping[str, Any] | None = None,
    context: Any = None,
) -> None:
    """Process one SQS message; raising leaves it on the queue for a later attempt."""
    from streamer_core.storage import RequestKey

    key = RequestKey.from_json(body)
    attempt = receive_count(attributes)
    last_attempt = attempt >= runtime.settings.max_receive_count
    add_log_keys(
        correlation_id=key.request_id,
        request_id=key.request_id,
        tenant_id=key.tenant_id,
        attempt=attempt,
    )
    left = seconds_left(runtime, context)
    try:
        if left < PROCESSOR_MARGIN_SECONDS:
            raise OutOfTime(f"{left:.1f} s left, {PROCESSOR_MARGIN_SECONDS:g} s needed to start")
        run = _start(runtime, key, message_attributes or {}, context, left)
    except RequestBusy:
        raise  # the worker holding the claim reports the outcome
    except Exception as error:
        if not last_attempt:
            raise
        # Raising now would move the message to the dead-letter queue and leave the
        # request QUEUED forever. If these calls fail too, their exception does move it
        # there, and the dead-letter alarm is what is left.
        logger.exception("request could not be started on its last attempt")
        if _held_by_live_worker(runtime, key):
            raise RequestBusy(f"request {key.request_id} is held by another worker") from None
        fail_and_notify(runtime, key, _start_failure(error))
        return
    if run is None:
        return
    started = time.perf_counter()
    watchdog = _watchdog(run) if last_attempt else None
    try:
        _run(run, last_attempt)
    finally:
        if watchdog is not None:
            watchdog.cancel()
        milliseconds(PROCESSING_LATENCY, (time.perf_counter() - started) * 1000)


def _watchdog(run: RequestRun) -> TimerHandle | None:
    """Fail the request from another thread if the last attempt's thread never comes back.

    The action's deadline only works when the action yields: a ``def`` action is abandoned
    on its thread, but an ``async def`` action that blocks its event loop holds this very
    thread until Lambda kills the invocation, after which SQS moves the message to the
    dead-letter queue and no code would ever end the request. The watchdog fires halfway
    through the margin, after the deadline had its chance.
    """
    delay = run.seconds_left() - PROCESSOR_MARGIN_SECONDS / 2
    if not math.isfinite(delay):
        return None
    return run.runtime.schedule(max(0.0, delay), run.give_up)


def _held_by_live_worker(runtime: Runtime, key: RequestKey) -> bool:
    """Whether another invocation is running the request now (a duplicate delivery).

    Failing it from here would take the request away from a worker that may still finish it.
    """
    current = runtime.storage.requests.get(key)
    if current is None or current.status is not RequestStatus.PROCESSING:
        return False
    return current.lease_until is not None and current.lease_until > runtime.clock() * 1000


def _start_failure(error: Exception) -> ErrorInfo:
    if isinstance(error, OutOfTime):
        return ErrorInfo(
            code=ErrorCode.INTERNAL_ERROR,
            message="the request could not be started: its worker ran out of time",
        )
    return ErrorInfo(code=ErrorCode.INTERNAL_ERROR, message=INTERNAL_MESSAGE)


def _start(
    runtime: Runtime,
    key: RequestKey,
    message_attributes: Mapping[str, Any],
    context: Any,
    left: float,
) -> RequestRun | None:
    """Claim the request and prepare its run; None when there is nothing to run."""
    record = runtime.storage.requests.claim(key, lease_seconds=_lease_seconds(runtime, context))
    if record is None:
        _not_claimed(runtime, key)
        return None
    spec = runtime.app.get(record.action)
    if spec is None or not spec.asynchronous:
        logger.error("queued request names no asynchronous action", extra={"action": record.action})
        frame = unknown_action(record.action, key.request_id)
        fail_and_notify(
            runtime, key, ErrorInfo(code=frame.code, message=frame.message, details=frame.details)
        )
        return None
    return RequestRun(
        runtime,
        record,
        spec,
        permissions=_permissions(message_attributes),
        seconds_left=left,
    )


def _run(run: RequestRun, last_attempt: bool) -> None:
    try:
        result = run.execute()
        run.reporter.finish()
        run.complete(result)
    except Cancelled:
        run.reporter.finish(flush=False)
        run.cancel()
    except _Failure as failure:
        run.reporter.finish(flush=False)
        run.fail(failure.info)
    except Exception:
        run.reporter.finish(flush=False)
        logger.exception("action crashed", extra={"last_attempt": last_attempt})
        if not last_attempt:
            _release(run)
            raise
        run.fail(ErrorInfo(code=ErrorCode.INTERNAL_ERROR, message=INTERNAL_MESSAGE))


def _release(run: RequestRun) -> None:
    """Hand the claim back so the redelivery retries now, not after the whole lease."""
    try:
        run.runtime.storage.requests.release(run.record.key, attempts=run.record.attempts)
    except Exception as error:
        logger.warning("claim not released", extra={"error": type(error).__name__})


def _not_claimed(runtime: Runtime, key: RequestKey) -> None:
    current = runtime.storage.requests.get(key)
    if current is None:
        logger.warning("queued request no longer exists")
        return
    if current.status in TERMINAL_STATUSES:
        logger.info("duplicate delivery of a finished request", extra={"status": current.status})
        return
    raise RequestBusy(f"request {key.request_id} is held by another worker")
