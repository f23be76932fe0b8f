"""Run one action of an application in-process, as Streamer would, for the application's tests.

An application's own tests should not need a local stack, moto or AWS to check what a client
sees when an action runs: its result or error and every progress report. :func:`run_action`
gives exactly that in one call::

    from streamer_handlers.testing import run_action

    outcome = run_action(app, "generate_report", {"steps": 2}, user="alice", tenant="acme",
                         permissions={"reports:write"})
    assert outcome.ok
    assert [p.percentage for p in outcome.progress] == [0.0, 50.0, 100.0]

The request takes the path a client's frame takes: it is encoded as JSON and parsed by the
server's own parser (so a payload the router refuses is refused here with the same error),
the action is looked up and its permissions checked as the router does, and the action runs
the way the router (synchronous actions) or the processor (asynchronous ones) runs it, with
the same mapping of exceptions to error codes. Every frame the client would receive is built
with the protocol's models and read back by the client's parser, so ``result``, ``error``
and ``progress`` hold what a client would hold.

What is not reproduced, because it belongs to the deployment rather than to the action: the
sync route's STREAMER_SYNC_TIMEOUT and Lambda's remaining time (only the action's own
``timeout`` applies), the rate limit, SQS's retries of an action that crashed (here the first
crash is final, as on the last delivery), the coalescing of progress reports (see
:func:`run_action`), and :func:`streamer_handlers._publish`, which needs a runtime.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from streamer_core import (
    BUILTIN_ACTIONS,
    AcknowledgmentFrame,
    CompleteFrame,
    ErrorCode,
    ErrorFrame,
    ErrorInfo,
    FrameTooLargeError,
    ProgressFrame,
    ProgressState,
    ProtocolError,
    RequestSnapshot,
    RequestStatus,
    ResponseFrame,
    ServerFrame,
    StatusFrame,
    encode,
    new_request_id,
    parse_client_frame,
    parse_server_frame,
)
from streamer_core.auth import Principal

from streamer_handlers._action_runner import DeadlineExceeded
from streamer_handlers._action_runner import run_action as _invoke
from streamer_handlers._app import ActionSpec, Streamer
from streamer_handlers._delivery.frames import error_frame, internal_error, unknown_action
from streamer_handlers._errors import ActionError, Cancelled
from streamer_handlers._progress import ProgressReporter
from streamer_handlers._request import Request

__all__ = ["Outcome", "run_action"]

_LONGEST_ID = "0" * 128
"""A ``status`` frame may answer a request id this long; a result must fit in it too."""


@dataclass(frozen=True)
class Outcome:
    """What a client would receive for one request, plus what the action raised.

    ``frames`` are the server frames in the order the client is sent them: ``response`` or
    ``error`` for a synchronous action; ``acknowledgment``, the ``progress`` reports, then
    ``complete`` or ``error`` for an asynchronous one (a refused request gets its ``error``
    only). ``exception`` is what the action raised, kept because the client only sees
    ``internal error`` for a crash and a failing test should be able to say why.
    """

    request: Request | None
    frames: list[ServerFrame]
    result: Any = None
    error: ErrorInfo | None = None
    progress: list[ProgressFrame] = field(default_factory=list)
    exception: BaseException | None = None

    @property
    def ok(self) -> bool:
        """Whether the request succeeded (no ``error`` frame)."""
        return self.error is None


def run_action(
    app: Streamer,
    action: str,
    payload: Mapping[str, Any] | None = None,
    *,
    user: str = "test-user",
    tenant: str = "test-tenant",
    permissions: Iterable[str] = (),
    request_id: str | None = None,
    metadata: Mapping[str, str] | None = None,
    connection_id: str = "test-connection",
    cancel_after: int | None = None,
) -> Outcome:
    """Send ``action`` with ``payload`` as the verified ``user`` of ``tenant``; wait for the end.

    Works for ``def`` and ``async def`` actions, synchronous and asynchronous, and from a test
    that runs an event loop itself (an ``async def`` action then runs on a thread of its own,
    as in the processor). The action's own ``timeout`` bounds it and ends in ``TIMEOUT``.

    Every progress report reaches ``Outcome.progress``, in order, with ``seq`` 1, 2, 3...
    In production at most STREAMER_PROGRESS_PER_SECOND reports a second are sent: one that
    comes sooner is held back and replaced by the next one, while the first report of 100 %
    and the last report are always sent. A client may therefore see fewer of them.

    ``cancel_after=n`` plays a client that cancels once ``n`` reports were sent: the next
    ``progress.report`` raises :class:`~streamer_handlers.Cancelled` and that report is not
    sent, as in the processor. A payload that is not JSON at all raises :class:`TypeError`:
    no client could send it.
    """
    if action in BUILTIN_ACTIONS:
        raise ValueError(f"{action!r} is a built-in action, answered by the router itself")
    if not user or not tenant:
        raise ValueError("user and tenant must be non-empty, as the authorizer requires")
    if cancel_after is not None and cancel_after < 0:
        raise ValueError("cancel_after must be 0 or more")
    principal = Principal(user_id=user, tenant_id=tenant, permissions=frozenset(permissions))
    fields = {
        "action": action,
        "id": request_id if request_id is not None else new_request_id(),
        "payload": dict(payload) if payload is not None else {},
        "metadata": dict(metadata) if metadata is not None else {},
    }
    try:
        # NaN and Infinity are written as JSON does not allow, for the server to refuse them.
        body = json.dumps(fields, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"the request cannot be sent as JSON: {exc}") from None
    try:
        frame = parse_client_frame(body)
    except ProtocolError as error:
        return _refused(error.to_frame())
    spec = app.get(frame.action)
    if spec is None:
        return _refused(unknown_action(frame.action, frame.id))
    if not principal.has_permissions(spec.permissions):
        return _refused(
            error_frame(
                ErrorCode.FORBIDDEN,
                f"action {frame.action!r} needs permissions the caller lacks",
                frame.id,
                {"missing": sorted(spec.permissions - principal.permissions)},
            )
        )
    request = Request(
        id=frame.id,
        action=frame.action,
        payload=dict(frame.payload),
        metadata=dict(frame.metadata),
        user_id=principal.user_id,
        tenant_id=principal.tenant_id,
        permissions=principal.permissions,
        connection_id=connection_id,
    )
    if spec.asynchronous:
        return _run_job(spec, request, cancel_after)
    return _run_sync(spec, request)


def _received(frame: BaseModel) -> ServerFrame:
    """The frame as the client's parser reads it from the wire."""
    return parse_server_frame(encode(frame))


def _refused(frame: ErrorFrame) -> Outcome:
    return _outcome(None, [], _received(frame), None)


def _outcome(
    request: Request | None,
    sent: list[ServerFrame],
    final: ServerFrame,
    exception: BaseException | None,
) -> Outcome:
    frames = [*sent, final]
    progress = [frame for frame in frames if isinstance(frame, ProgressFrame)]
    if isinstance(final, ErrorFrame):
        info = ErrorInfo(code=final.code, message=final.message, details=final.details)
        return Outcome(request, frames, None, info, progress, exception)
    result = final.result if isinstance(final, ResponseFrame | CompleteFrame) else None
    return Outcome(request, frames, result, None, progress, exception)


def _failure(spec: ActionSpec, request: Request, exc: Exception, *, job: bool) -> ErrorFrame:
    """The ``error`` the router (``job=False``) or the processor sends for what the action raised.

    Only a job has a progress reporter, so only there does ``Cancelled`` mean a cancel; from a
    synchronous action it is as unexpected as any other exception.
    """
    if job and isinstance(exc, Cancelled):
        return error_frame(ErrorCode.CANCELLED, "request cancelled", request.id)
    if isinstance(exc, ActionError):
        return error_frame(exc.code, exc.message, request.id, exc.details)
    if isinstance(exc, DeadlineExceeded):
        return error_frame(
            ErrorCode.TIMEOUT, f"action did not finish within {spec.timeout:g} s", request.id
        )
    return internal_error(request.id)


def _raised(exc: Exception) -> BaseException | None:
    """What the action raised; a deadline is the runner's doing, not the action's."""
    return None if isinstance(exc, DeadlineExceeded) else exc


def _run_sync(spec: ActionSpec, request: Request) -> Outcome:
    """As the router answers: ``response`` with the result, or ``error``."""
    try:
        result = _invoke(spec, (request,), spec.timeout)
    except Exception as exc:
        failure = _failure(spec, request, exc, job=False)
        return _outcome(request, [], _received(failure), _raised(exc))
    reply: BaseModel
    try:
        reply = ResponseFrame(request_id=request.id, result=result)
        encode(reply)
    except PydanticValidationError:
        reply = internal_error(request.id)
    except FrameTooLargeError:
        reply = error_frame(
            ErrorCode.INTERNAL_ERROR, "the reply is larger than the 128 KB frame limit", request.id
        )
    return _outcome(request, [], _received(reply), None)


def _run_job(spec: ActionSpec, request: Request, cancel_after: int | None) -> Outcome:
    """As the router acknowledges and the processor runs: progress, then the final frame."""
    sent: list[ServerFrame] = [
        _received(AcknowledgmentFrame(request_id=request.id, action=spec.name))
    ]

    def emit(frame: ProgressFrame) -> bool:
        reports = sum(1 for item in sent if isinstance(item, ProgressFrame))
        if cancel_after is not None and reports >= cancel_after:
            return True
        sent.append(_received(frame))
        return False

    # Reports are due at once whatever the clock says, so none is held back or replaced.
    reporter = ProgressReporter(request.id, emit, per_second=math.inf)
    try:
        result = _invoke(spec, (request, reporter), spec.timeout)
    except Exception as exc:
        reporter.finish(flush=False)
        failure = _failure(spec, request, exc, job=True)
        return _outcome(request, sent, _received(failure), _raised(exc))
    reporter.finish()
    final = _completion(spec, request, result, reporter.last_frame)
    return _outcome(request, sent, _received(final), None)


def _completion(
    spec: ActionSpec, request: Request, result: Any, last: ProgressFrame | None
) -> BaseModel:
    """``complete``, unless the result could not also come back in a ``status`` frame later."""
    try:
        frame = CompleteFrame(request_id=request.id, result=result)
        encode(frame)
        now_ms = int(time.time() * 1000)
        progress = (
            None
            if last is None
            else ProgressState.model_validate(last.model_dump(exclude={"type", "request_id"}))
        )
        snapshot = RequestSnapshot(
            request_id=request.id,
            action=spec.name,
            status=RequestStatus.COMPLETED,
            progress=progress,
            result=result,
            created_at=now_ms,
            updated_at=now_ms,
        )
        encode(StatusFrame(request_id=_LONGEST_ID, snapshot=snapshot))
    except PydanticValidationError:
        return error_frame(ErrorCode.INTERNAL_ERROR, "the action's result is not JSON", request.id)
    except FrameTooLargeError as error:
        return error_frame(
            ErrorCode.INTERNAL_ERROR,
            "the action's result is too large: with the request's state it would take "
            f"{error.size} bytes, over the {error.limit}-byte frame limit",
            request.id,
            {"size": error.size, "limit": error.limit},
        )
    return frame
