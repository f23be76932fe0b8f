"""Accepting an asynchronous request: store it once, follow it, queue it, acknowledge it.

The request record is created with a conditional write keyed by the client's request id,
so a resent frame (a retry after a dropped socket, a double click) finds the first record
instead of making a second job.

The caller's connection follows the request before the record is written or read, and so
before the message is queued: a resend from a new connection cannot miss a completion that
lands between reading the record and subscribing. The subscription is found through an
eventually consistent index, though, so it may not be visible to a processor that starts
within moments; the connection that first submitted the request is stored on the record,
and the processor always sends to it directly (see :mod:`.delivery`). A connection that
resends the id moments before the job ends may miss its frames in that window; its
acknowledgment's status, or a ``status`` request, tells it where the request stands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from streamer_core import (
    TERMINAL_STATUSES,
    AcknowledgmentFrame,
    ClientFrame,
    ErrorCode,
    ErrorInfo,
    RequestStatus,
)

from .builtin_actions import Caller, request_key
from .delivery import follow_request, unfollow_request
from .observability import logger
from .replies import error_frame

if TYPE_CHECKING:
    from streamer_core.storage import RequestKey, RequestRecord

    from .runtime import Runtime

REQUEUE_AFTER_MS = 60_000
"""A request still QUEUED this long after creation has most likely lost its SQS message
(the send failed after the record was written): a resend of its id queues it again. A
second message is harmless, because only one processor can claim the request."""


def _enqueue(runtime: Runtime, key: RequestKey, caller: Caller) -> None:
    runtime.sqs.send_message(
        QueueUrl=runtime.queue_url(),
        MessageBody=key.to_json(),
        MessageAttributes={
            "permissions": {
                "DataType": "String",
                "StringValue": " ".join(sorted(caller.principal.permissions)) or "-",
            },
            "connectionId": {"DataType": "String", "StringValue": caller.connection_id},
        },
    )


def _should_enqueue(record: RequestRecord, created: bool, now_ms: int) -> bool:
    if created:
        return True
    return record.status is RequestStatus.QUEUED and now_ms - record.created_at >= REQUEUE_AFTER_MS


def submit(runtime: Runtime, caller: Caller, frame: ClientFrame) -> BaseModel:
    """Queue ``frame`` as an asynchronous request and answer ``acknowledgment``.

    A resent id answers with the stored request's status; when that status is final the
    client reads the outcome with ``status`` (the route response carries one frame only).
    """
    from streamer_core.storage import ConflictError, ItemTooLargeError

    key = request_key(caller, frame.id)
    requests = runtime.storage.requests
    payload: dict[str, Any] = dict(frame.payload)
    follow_request(runtime, key, caller.connection_id, expires_at=caller.connection_expires_at)
    try:
        record, created = requests.create(
            key,
            frame.action,
            payload,
            connection_id=caller.connection_id,
            metadata=dict(frame.metadata),
        )
    except ItemTooLargeError as error:
        unfollow_request(runtime, key, caller.connection_id)
        return error_frame(ErrorCode.VALIDATION_ERROR, str(error), frame.id, {"field": "payload"})
    except ConflictError:
        unfollow_request(runtime, key, caller.connection_id)
        return error_frame(
            ErrorCode.CONFLICT,
            "this request id was already used for a different action or payload",
            frame.id,
            {"field": "id"},
        )
    if record.status in TERMINAL_STATUSES:
        unfollow_request(runtime, key, caller.connection_id)
    if _should_enqueue(record, created, int(runtime.clock() * 1000)):
        try:
            _enqueue(runtime, key, caller)
        except Exception:
            logger.exception("could not queue a request", extra={"request_id": key.request_id})
            if created:
                requests.fail(
                    key, ErrorInfo(code=ErrorCode.INTERNAL_ERROR, message="could not queue")
                )
            return error_frame(
                ErrorCode.INTERNAL_ERROR, "the request could not be queued", frame.id
            )
    return AcknowledgmentFrame(request_id=frame.id, action=frame.action, status=record.status)
