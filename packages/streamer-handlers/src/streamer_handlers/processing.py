"""Running one queued request from an SQS record, exactly once.

The claim is a conditional write, so a duplicate delivery of a running request finds it
taken and goes back to the queue, and a delivery of a finished one is dropped. The claim's
lease lasts as long as this invocation can (Lambda's remaining time): once it lapses, the
worker is certainly gone and a redelivery can take the request over. An attempt that
crashes hands its claim back at once (``RequestStore.release``), so SQS's next delivery retries.
A failure on the last delivery SQS will make (STREAMER_MAX_RECEIVE_COUNT, the queue's
maxReceiveCount) marks the request FAILED and tells its followers, so nothing stays
PROCESSING after the message moves to the dead-letter queue.
"""

from __future__ import annotations

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
    encode,
)

from .delivery import deliver_to_request
from .errors import ActionError, Cancelled
from .events import receive_count
from .execution import DeadlineExceeded, run_action
from .observability import (
    PROCESSING_LATENCY,
    PROGRESS_DELIVERED,
    REQUESTS_FAILED,
    add_log_keys,
    count,
    logger,
    milliseconds,
)
from .progress import ProgressReporter
from .replies import INTERNAL_MESSAGE, error_frame
from .request import Request

if TYPE_CHECKING:
    from streamer_core.storage import RequestKey, RequestRecord

    from .app import ActionSpec
    from .runtime import Runtime


class RequestBusy(Exception):
    """Another worker holds a live claim on the request: leave the message for later."""


class _Failure(Exception):
    """A definitive failure chosen by the processor (action error, timeout, bad result)."""

    def __init__(self, code: ErrorCode, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.info = ErrorInfo(code=code, message=message, details=details or {})


def _lease_seconds(runtime: Runtime, context: Any) -> float:
    lease = float(runtime.settings.processor_timeout)
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining):
        lease = min(lease, max(1.0, remaining() / 1000))
    return lease


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
    ) -> None:
        self.runtime = runtime
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

        The client that cancelled gets ``error`` CANCELLED next, not more progress.
        """
        state = ProgressState(
            percentage=frame.percentage,
            message=frame.message,
            metadata=frame.metadata,
            seq=frame.seq,
        )
        updated = self.runtime.storage.requests.record_progress(self.key, state)
        if updated is None or updated.cancel_requested:
            return True
        deliver_to_request(self.runtime, self.key, frame)
        count(PROGRESS_DELIVERED)
        return False

    def _notify(self, frame: BaseModel) -> None:
        try:
            deliver_to_request(self.runtime, self.key, frame)
        except Exception:
            logger.exception("could not deliver the final frame")

    def execute(self) -> Any:
        """Run the action and return its result, translating how it ended."""
        try:
            return run_action(self.spec, (self.request, self.reporter), self.spec.timeout)
        except ActionError as error:
            raise _Failure(error.code, error.message, error.details) from None
        except DeadlineExceeded:
            raise _Failure(
                ErrorCode.TIMEOUT, f"action did not finish within {self.spec.timeout:g} s"
            ) from None

    def complete(self, result: Any) -> None:
        """Store the result and send ``complete``; a result that cannot be sent is a failure."""
        try:
            frame = CompleteFrame(request_id=self.key.request_id, result=result)
            data = encode(frame)
        except PydanticValidationError:
            raise _Failure(ErrorCode.INTERNAL_ERROR, "the action's result is not JSON") from None
        except FrameTooLargeError:
            raise _Failure(
                ErrorCode.INTERNAL_ERROR, "the action's result is larger than 128 KB"
            ) from None
        self.runtime.storage.requests.complete(self.key, result)
        logger.info("request completed", extra={"bytes": len(data)})
        self._notify(frame)

    def fail(self, info: ErrorInfo) -> None:
        """Mark the request FAILED and send ``error`` to its followers."""
        from streamer_core.storage import IllegalTransitionError

        try:
            self.runtime.storage.requests.fail(self.key, info)
        except IllegalTransitionError as error:
            logger.warning("request could not be failed", extra={"status": str(error.current)})
            return
        count(REQUESTS_FAILED)
        self._notify(error_frame(info.code, info.message, self.key.request_id, info.details))

    def cancel(self) -> None:
        """Mark the request CANCELLED after the action stopped on a cancel."""
        from streamer_core.storage import IllegalTransitionError

        try:
            self.runtime.storage.requests.mark_cancelled(self.key)
        except IllegalTransitionError as error:
            logger.info("request stopped without ownership", extra={"status": str(error.current)})
            return
        self._notify(error_frame(ErrorCode.CANCELLED, "request cancelled", self.key.request_id))


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
    add_log_keys(request_id=key.request_id, tenant_id=key.tenant_id, attempt=attempt)
    requests = runtime.storage.requests
    record = requests.claim(key, lease_seconds=_lease_seconds(runtime, context))
    if record is None:
        _not_claimed(runtime, key)
        return
    spec = runtime.app.get(record.action)
    if spec is None or not spec.asynchronous:
        logger.error("queued request names no asynchronous action", extra={"action": record.action})
        requests.fail(
            key, ErrorInfo(code=ErrorCode.NOT_FOUND, message=f"unknown action {record.action!r}")
        )
        deliver_to_request(
            runtime,
            key,
            error_frame(ErrorCode.NOT_FOUND, f"unknown action {record.action!r}", key.request_id),
        )
        return
    run = RequestRun(
        runtime,
        record,
        spec,
        permissions=_permissions(message_attributes or {}),
    )
    started = time.perf_counter()
    try:
        _run(run, last_attempt)
    finally:
        milliseconds(PROCESSING_LATENCY, (time.perf_counter() - started) * 1000)


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
