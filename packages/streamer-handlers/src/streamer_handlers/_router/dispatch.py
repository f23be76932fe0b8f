"""What the router does with one message, from raw body to the reply frame.

Every outcome is a frame, never an exception: bad input, a refused permission, a crashing
action all become an ``error`` frame answering the request id, so a client is never left
waiting and the function never fails the gateway's integration.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from streamer_core import (
    BUILTIN_ACTIONS,
    ClientFrame,
    ErrorCode,
    ProtocolError,
    ResponseFrame,
    parse_client_frame,
)
from streamer_core.auth import Principal

from streamer_handlers._action_runner import DeadlineExceeded, run_action
from streamer_handlers._delivery.frames import error_frame, internal_error, unknown_action
from streamer_handlers._errors import ActionError
from streamer_handlers._lambda.api_events import (
    authorizer_principal,
    connection_expires_at,
    message_body,
    websocket_event,
)
from streamer_handlers._lambda.observability import RATE_LIMITED, add_log_keys, count, logger
from streamer_handlers._request import Request
from streamer_handlers._router.builtins import Caller, run_builtin
from streamer_handlers._router.rate_limit import Verdict, budget_for
from streamer_handlers._router.submit import submit

if TYPE_CHECKING:
    from streamer_handlers._app import ActionSpec
    from streamer_handlers._lambda.runtime import Runtime

DEADLINE_MARGIN_SECONDS = 1.0
"""Time kept back from Lambda's remaining time to encode and return the reply."""
RATE_WINDOW_SECONDS = 60


def _caller(runtime: Runtime, request_context: Mapping[str, Any]) -> Caller | None:
    """The verified caller; from the authorizer context, with a stored record as fallback.

    On AWS the context is always there. The fallback (one GetItem) serves gateways without
    an authorizer, and still only trusts what ``$connect`` verified and stored.
    """
    connection_id = str(request_context.get("connectionId", ""))
    connected_at = request_context.get("connectedAt")
    expires_at = connection_expires_at(
        int(connected_at) if isinstance(connected_at, int | float) else None, runtime.clock()
    )
    principal = authorizer_principal(request_context)
    if principal is None:
        stored = runtime.storage.connections.get(connection_id) if connection_id else None
        if stored is None:
            return None
        principal = Principal(
            user_id=stored.user_id, tenant_id=stored.tenant_id, permissions=stored.permissions
        )
        expires_at = stored.expires_at
    return Caller(principal, connection_id, expires_at)


def _best_effort_id(body: str | bytes) -> str | None:
    try:
        return parse_client_frame(body).id
    except ProtocolError as error:
        return error.request_id


def route_message(
    runtime: Runtime, event: Mapping[str, Any], context: Any = None
) -> BaseModel | None:
    """Answer one WebSocket message event with the frame to send back to its sender.

    None means the caller was already answered another way: a synchronous action that
    overran its deadline got TIMEOUT from the watchdog, through the management API.
    """
    body = message_body(websocket_event(event))
    try:
        return _route(runtime, event, body, context)
    except Exception:
        logger.exception("message could not be handled")
        return internal_error(_best_effort_id(body))


def _route(
    runtime: Runtime, event: Mapping[str, Any], body: str | bytes, context: Any
) -> BaseModel | None:
    request_context: Mapping[str, Any] = event.get("requestContext") or {}
    caller = _caller(runtime, request_context)
    if caller is None:
        return error_frame(
            ErrorCode.UNAUTHORIZED, "this connection is not authenticated", _best_effort_id(body)
        )
    add_log_keys(user_id=caller.principal.user_id, tenant_id=caller.principal.tenant_id)
    # Counted in memory against a chunk reserved in DynamoDB (see rate_limit.py): most
    # messages make no table call here, and the table still bounds every container's total.
    # A window the table said is used up is refused from memory until it ends.
    settings = runtime.settings
    verdict = budget_for(runtime.storage.connections).check(
        caller.connection_id,
        limit=settings.rate_limit,
        window_seconds=RATE_WINDOW_SECONDS,
        now=runtime.clock(),
        chunk=settings.rate_limit_chunk,
    )
    if verdict is not Verdict.ALLOWED:
        # The store grants nothing to unknown connections either; only then is it read.
        if (
            verdict is Verdict.REFUSED
            and runtime.storage.connections.get(caller.connection_id) is None
        ):
            return error_frame(
                ErrorCode.UNAUTHORIZED,
                "this connection is no longer registered; reconnect",
                _best_effort_id(body),
            )
        count(RATE_LIMITED)
        return error_frame(
            ErrorCode.RATE_LIMITED,
            f"more than {runtime.settings.rate_limit} messages in {RATE_WINDOW_SECONDS} s",
            _best_effort_id(body),
            {"limit": runtime.settings.rate_limit, "window_seconds": RATE_WINDOW_SECONDS},
        )
    try:
        frame = parse_client_frame(body)
    except ProtocolError as error:
        if error.request_id is not None:
            add_log_keys(correlation_id=error.request_id, request_id=error.request_id)
        return error.to_frame()
    # The client's id is what ties this message to its acknowledgment, progress and
    # result across functions, so it is the correlation id from here on.
    add_log_keys(correlation_id=frame.id, request_id=frame.id, action=frame.action)
    try:
        if frame.action in BUILTIN_ACTIONS:
            return run_builtin(runtime, caller, frame)
        return _run_user_action(runtime, caller, frame, context)
    except ProtocolError as error:
        return error.to_frame()


def _run_user_action(
    runtime: Runtime, caller: Caller, frame: ClientFrame, context: Any
) -> BaseModel | None:
    spec = runtime.app.get(frame.action)
    if spec is None:
        return unknown_action(frame.action, frame.id)
    if not caller.principal.has_permissions(spec.permissions):
        return error_frame(
            ErrorCode.FORBIDDEN,
            f"action {frame.action!r} needs permissions the caller lacks",
            frame.id,
            {"missing": sorted(spec.permissions - caller.principal.permissions)},
        )
    if spec.asynchronous:
        return submit(runtime, caller, frame)
    return _run_sync(runtime, caller, frame, spec, context)


def _deadline(runtime: Runtime, spec: ActionSpec, context: Any) -> float:
    deadline = runtime.settings.sync_timeout
    if spec.timeout is not None:
        deadline = min(deadline, spec.timeout)
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining):
        left = remaining() / 1000 - DEADLINE_MARGIN_SECONDS
        if math.isfinite(left):
            deadline = min(deadline, max(0.001, left))
    return deadline


def _answer_timeout(
    runtime: Runtime, caller: Caller, frame: ClientFrame, deadline: float, answer: threading.Lock
) -> None:
    """The watchdog: runs on a timer thread while the action still holds the invocation."""
    if not answer.acquire(blocking=False):
        return
    add_log_keys(correlation_id=frame.id, request_id=frame.id, action=frame.action)
    logger.error("action overran its deadline", extra={"deadline_s": deadline})
    from streamer_core import encode

    timeout = error_frame(
        ErrorCode.TIMEOUT, f"action did not finish within {deadline:g} s", frame.id
    )
    try:
        runtime.sender.send([caller.connection_id], encode(timeout))
    except Exception:
        logger.exception("could not send the timeout")


def _run_sync(
    runtime: Runtime, caller: Caller, frame: ClientFrame, spec: ActionSpec, context: Any
) -> BaseModel | None:
    request = Request(
        id=frame.id,
        action=frame.action,
        payload=dict(frame.payload),
        metadata=dict(frame.metadata),
        user_id=caller.principal.user_id,
        tenant_id=caller.principal.tenant_id,
        permissions=caller.principal.permissions,
        connection_id=caller.connection_id,
    )
    deadline = _deadline(runtime, spec, context)
    # Exactly one of the action's return and the watchdog answers: whichever takes this first.
    answer = threading.Lock()
    # An async def action is cancelled at the deadline by itself; the watchdog still covers
    # one that blocks its event loop.
    watchdog = runtime.schedule(
        deadline, lambda: _answer_timeout(runtime, caller, frame, deadline, answer)
    )
    try:
        reply = _sync_reply(spec, request, frame, deadline)
    finally:
        watchdog.cancel()
    if not answer.acquire(blocking=False):
        logger.info("an overrun action returned after its timeout was sent")
        return None
    return reply


def _sync_reply(
    spec: ActionSpec, request: Request, frame: ClientFrame, deadline: float
) -> BaseModel:
    try:
        result = run_action(spec, (request,), deadline, in_place=True)
    except ActionError as error:
        return error_frame(error.code, error.message, frame.id, error.details)
    except DeadlineExceeded:
        return error_frame(
            ErrorCode.TIMEOUT, f"action did not finish within {deadline:g} s", frame.id
        )
    except Exception:
        logger.exception("action failed")
        return internal_error(frame.id)
    try:
        return ResponseFrame(request_id=frame.id, result=result)
    except PydanticValidationError:
        logger.error("action returned a value that is not JSON")
        return internal_error(frame.id)
