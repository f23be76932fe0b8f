"""Exceptions raised by the client.

Every failure a caller can see derives from :class:`StreamerError`, so one ``except`` clause is
enough for code that does not care why. Errors the server reported keep the wire ``ErrorCode``
and map to one subclass each, so callers branch with ``except NotFoundError`` rather than by
comparing strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streamer_core import ErrorCode

__all__ = [
    "AuthenticationFailed",
    "ClientClosed",
    "ConflictError",
    "ConnectionFailed",
    "ForbiddenError",
    "InternalServerError",
    "InvalidRequest",
    "NotFoundError",
    "RateLimitedError",
    "RemoteError",
    "RemoteTimeoutError",
    "RequestCancelledError",
    "RequestTimeout",
    "StreamerError",
    "UnauthorizedError",
    "ValidationError",
    "remote_error",
]


class StreamerError(Exception):
    """Base class of every exception this package raises on purpose."""


_BY_CODE: dict[ErrorCode, type[RemoteError]] = {}
"""Each wire code's class, filled in as the classes below name their code."""


class RemoteError(StreamerError):
    """The server answered with an ``error`` frame.

    ``code`` is the wire code, ``details`` the structured context the server attached (for example
    the offending field), so programs can react without parsing ``message``.
    """

    code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init__(
        self,
        code: ErrorCode | str,
        message: str,
        details: Mapping[str, Any] | None = None,
        *,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = ErrorCode(code)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})
        self.request_id = request_id

    def __init_subclass__(cls, *, code: ErrorCode | None = None, **kwargs: Any) -> None:
        """A subclass named with ``code=`` is the one :func:`remote_error` raises for it."""
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code
            _BY_CODE[code] = cls


class ValidationError(RemoteError, code=ErrorCode.VALIDATION_ERROR):
    """The server refused the frame or its payload as malformed."""


class UnauthorizedError(RemoteError, code=ErrorCode.UNAUTHORIZED):
    """The server no longer accepts the caller's credentials."""


class ForbiddenError(RemoteError, code=ErrorCode.FORBIDDEN):
    """The caller is known but lacks a permission the action requires."""


class NotFoundError(RemoteError, code=ErrorCode.NOT_FOUND):
    """The action, topic or request does not exist for this caller."""


class ConflictError(RemoteError, code=ErrorCode.CONFLICT):
    """A request id was reused with a different action or payload."""


class RateLimitedError(RemoteError, code=ErrorCode.RATE_LIMITED):
    """The connection sent more messages than the server allows per window."""


class RemoteTimeoutError(RemoteError, code=ErrorCode.TIMEOUT):
    """The server gave up on the work; distinct from :class:`RequestTimeout`, which is local."""


class InternalServerError(RemoteError, code=ErrorCode.INTERNAL_ERROR):
    """The action failed on the server in a way it did not classify."""


class RequestCancelledError(RemoteError, code=ErrorCode.CANCELLED):
    """The job was cancelled before it finished (by this caller or another one)."""


def remote_error(
    code: ErrorCode | str,
    message: str,
    details: Mapping[str, Any] | None = None,
    *,
    request_id: str | None = None,
) -> RemoteError:
    """Build the typed exception for a wire error so every code path maps codes the same way."""
    error_code = ErrorCode(code)
    cls = _BY_CODE.get(error_code, RemoteError)
    return cls(error_code, message, details, request_id=request_id)


class RequestTimeout(StreamerError, TimeoutError):
    """No final answer arrived within the caller's deadline; the work may still run remotely."""


class ClientClosed(StreamerError):
    """The client was closed (or never opened), so nothing can be sent or awaited on it."""


class ConnectionFailed(StreamerError):
    """The client could not reach the server, or gave up reconnecting to it."""


class AuthenticationFailed(ConnectionFailed):
    """The server refused the WebSocket handshake itself (HTTP 401 or 403)."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class InvalidRequest(StreamerError, ValueError):
    """The frame could not be built locally (bad action name, payload not JSON, too large)."""
