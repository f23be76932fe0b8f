"""Accepting an asynchronous request: store it and follow it in one write, queue it, acknowledge.

The request record is created with a conditional write keyed by the client's request id,
so a resent frame (a retry after a dropped socket, a double click) finds the first record
instead of making a second job. The same write adds the caller's connection to the
request's followers (see :mod:`.delivery`): a resend from a new connection joins the
audience atomically with reading where the request stands, so no completion can fall
between the two, and a submission costs that one write and one SQS message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from streamer_core import (
    AcknowledgmentFrame,
    ClientFrame,
    ErrorCode,
    ErrorInfo,
    RequestStatus,
)

from streamer_handlers._delivery.frames import error_frame
from streamer_handlers._lambda.observability import logger
from streamer_handlers._router.builtins import Caller, request_key

if TYPE_CHECKING:
    from streamer_core.storage import RequestKey, RequestRecord

    from streamer_handlers._lambda.runtime import Runtime

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
    try:
        record, created = requests.create(
            key,
            frame.action,
            payload,
            connection_id=caller.connection_id,
            metadata=dict(frame.metadata),
        )
    except ItemTooLargeError as error:
        return error_frame(ErrorCode.VALIDATION_ERROR, str(error), frame.id, {"field": "payload"})
    except ConflictError:
        return error_frame(
            ErrorCode.CONFLICT,
            "this request id was already used for a different action or payload",
            frame.id,
            {"field": "id"},
        )
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
