"""The built-in actions every Streamer API answers: ping, subscribe, unsubscribe, status, cancel.

Every lookup is scoped by the caller's verified principal: topics live inside the caller's
tenant, and a request is addressed by ``(tenant, user, id)``, so another tenant's topic or
another user's request is simply not there (NOT_FOUND, not FORBIDDEN: its existence is
not disclosed either).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel
from streamer_core import (
    TERMINAL_STATUSES,
    ClientFrame,
    ErrorCode,
    PongFrame,
    RequestRefPayload,
    RequestStatus,
    StatusFrame,
    SubscribedFrame,
    TopicPayload,
    UnsubscribedFrame,
    builtin_payload,
)
from streamer_core.auth import Principal

from .delivery import deliver_to_request, request_topic
from .observability import logger
from .replies import error_frame

if TYPE_CHECKING:
    from streamer_core.storage import RequestKey

    from .runtime import Runtime


@dataclass(frozen=True)
class Caller:
    """Who sent a message, over which connection, and until when that connection can live."""

    principal: Principal
    connection_id: str
    connection_expires_at: int


def request_key(caller: Caller, request_id: str) -> RequestKey:
    """The key of ``request_id`` as owned by the caller: the only requests it may touch."""
    from streamer_core.storage import RequestKey

    return RequestKey(caller.principal.tenant_id, caller.principal.user_id, request_id)


def run_builtin(runtime: Runtime, caller: Caller, frame: ClientFrame) -> BaseModel:
    """Answer a built-in action; raises ProtocolError for an invalid payload."""
    payload = builtin_payload(frame)
    if frame.action == "ping":
        return PongFrame(request_id=frame.id)
    if isinstance(payload, TopicPayload):
        return _topic_action(runtime, caller, frame, payload)
    if isinstance(payload, RequestRefPayload) and frame.action == "status":
        return _status(runtime, caller, frame, payload)
    if isinstance(payload, RequestRefPayload) and frame.action == "cancel":
        return _cancel(runtime, caller, frame, payload)
    # A built-in the protocol knows but this server does not serve yet.
    return error_frame(
        ErrorCode.NOT_FOUND, f"unknown action {frame.action!r}", frame.id, {"field": "action"}
    )


def _topic_action(
    runtime: Runtime, caller: Caller, frame: ClientFrame, payload: TopicPayload
) -> BaseModel:
    subscriptions = runtime.storage.subscriptions
    if frame.action == "subscribe":
        subscriptions.subscribe(
            caller.connection_id,
            caller.principal.tenant_id,
            payload.topic,
            expires_at=caller.connection_expires_at,
        )
        return SubscribedFrame(request_id=frame.id, topic=payload.topic)
    subscriptions.unsubscribe(caller.connection_id, payload.topic)
    return UnsubscribedFrame(request_id=frame.id, topic=payload.topic)


def _not_found(frame: ClientFrame, request_id: str) -> BaseModel:
    return error_frame(
        ErrorCode.NOT_FOUND,
        f"no request {request_id!r}",
        frame.id,
        {"field": "payload.request_id"},
    )


def _status(
    runtime: Runtime, caller: Caller, frame: ClientFrame, payload: RequestRefPayload
) -> BaseModel:
    """Answer the stored snapshot; a still-running request also starts streaming here.

    That is how a client that reconnected mid-job picks its updates up again.
    """
    key = request_key(caller, payload.request_id)
    record = runtime.storage.requests.get(key)
    if record is None:
        return _not_found(frame, payload.request_id)
    if record.status not in TERMINAL_STATUSES:
        runtime.storage.subscriptions.subscribe(
            caller.connection_id,
            key.tenant_id,
            request_topic(key),
            expires_at=caller.connection_expires_at,
        )
    return StatusFrame(request_id=frame.id, snapshot=record.snapshot())


def _cancel(
    runtime: Runtime, caller: Caller, frame: ClientFrame, payload: RequestRefPayload
) -> BaseModel:
    """Cancel at once when queued; a running request stops at its next progress report."""
    from streamer_core.storage import IllegalTransitionError

    key = request_key(caller, payload.request_id)
    requests = runtime.storage.requests
    before = requests.get(key)
    if before is None:
        return _not_found(frame, payload.request_id)
    if before.status in TERMINAL_STATUSES:
        return StatusFrame(request_id=frame.id, snapshot=before.snapshot())
    try:
        after = requests.request_cancel(key)
    except IllegalTransitionError as error:
        if error.current is None:
            return _not_found(frame, payload.request_id)
        raise
    if after.status is RequestStatus.CANCELLED and before.status is RequestStatus.QUEUED:
        try:
            deliver_to_request(
                runtime,
                key,
                error_frame(ErrorCode.CANCELLED, "request cancelled", key.request_id),
            )
        except Exception:
            logger.exception("could not tell followers about a cancellation")
    return StatusFrame(request_id=frame.id, snapshot=after.snapshot())
