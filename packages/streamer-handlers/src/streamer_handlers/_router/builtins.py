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

from streamer_handlers._delivery.fanout import deliver_to_request
from streamer_handlers._delivery.frames import error_frame
from streamer_handlers._lambda.observability import logger

if TYPE_CHECKING:
    from streamer_core.storage import RequestKey

    from streamer_handlers._lambda.runtime import Runtime


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
    if isinstance(payload, TopicPayload):
        return _topic_action(runtime, caller, frame, payload)
    if isinstance(payload, RequestRefPayload):
        if frame.action == "status":
            return _status(runtime, caller, frame, payload)
        return _cancel(runtime, caller, frame, payload)
    # ``builtin_payload`` validates a payload for every built-in but ``ping``.
    return PongFrame(request_id=frame.id)


def _topic_action(
    runtime: Runtime, caller: Caller, frame: ClientFrame, payload: TopicPayload
) -> BaseModel:
    subscriptions = runtime.storage.subscriptions
    if frame.action == "subscribe":
        refused = _over_subscription_limit(runtime, caller, frame, payload.topic)
        if refused is not None:
            return refused
        subscriptions.subscribe(
            caller.connection_id,
            caller.principal.tenant_id,
            payload.topic,
            expires_at=caller.connection_expires_at,
        )
        return SubscribedFrame(request_id=frame.id, topic=payload.topic)
    subscriptions.unsubscribe(caller.connection_id, payload.topic)
    return UnsubscribedFrame(request_id=frame.id, topic=payload.topic)


def _over_subscription_limit(
    runtime: Runtime, caller: Caller, frame: ClientFrame, topic: str
) -> BaseModel | None:
    """Refuse a new topic beyond STREAMER_MAX_SUBSCRIPTIONS for this connection.

    Every subscription is an item to store and a recipient in every fan-out of its topic;
    without a cap one connection could subscribe to topics without end. Following its own
    requests is not limited here (followers live on the requests). Subscribing again to a
    topic already held is idempotent and always allowed.

    The count costs a query of the connection's subscriptions before the write: the cap
    spans items, and a condition can only see the one it writes. A transaction could do
    both in one request, but DynamoDB bills each of its items twice.
    """
    limit = runtime.settings.max_subscriptions
    held = runtime.storage.subscriptions.topics_of(caller.connection_id)
    if topic in held or len(held) < limit:
        return None
    return error_frame(
        ErrorCode.VALIDATION_ERROR,
        f"this connection already holds {len(held)} subscriptions, the limit is {limit}; "
        "unsubscribe from a topic first",
        frame.id,
        {"field": "payload.topic", "limit": limit},
    )


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

    That is how a client that reconnected mid-job picks its updates up again. Joining the
    request's followers and reading it are one conditional write: anything written after
    it is sent to the connection, and anything before is in the snapshot, so no completion
    falls between the two. A request that is absent or already over is only read.
    """
    key = request_key(caller, payload.request_id)
    record, _followed = runtime.storage.requests.follow(key, caller.connection_id)
    if record is None:
        return _not_found(frame, payload.request_id)
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
                after,
                error_frame(ErrorCode.CANCELLED, "request cancelled", key.request_id),
            )
        except Exception:
            logger.exception("could not tell followers about a cancellation")
    return StatusFrame(request_id=frame.id, snapshot=after.snapshot())
