"""Building the ``error`` frames every function answers with."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError as PydanticValidationError
from streamer_core import ErrorCode, ErrorFrame

INTERNAL_MESSAGE = "internal error"
"""What a client learns about an unexpected exception: nothing it could exploit."""


def error_frame(
    code: ErrorCode,
    message: str,
    request_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> ErrorFrame:
    """An ``error`` frame answering ``request_id`` (None when the frame had no usable id).

    Details an action supplied that are not JSON are dropped rather than turning a chosen
    error into an internal one.
    """
    try:
        return ErrorFrame(request_id=request_id, code=code, message=message, details=details or {})
    except PydanticValidationError:
        return ErrorFrame(request_id=request_id, code=code, message=message)


def internal_error(request_id: str | None = None) -> ErrorFrame:
    """The answer to a failure the client cannot act on; the cause goes to the logs only."""
    return error_frame(ErrorCode.INTERNAL_ERROR, INTERNAL_MESSAGE, request_id)


def unknown_action(action: str, request_id: str | None) -> ErrorFrame:
    """The one wording of "no such action", whether the router or the processor finds out."""
    return error_frame(
        ErrorCode.NOT_FOUND, f"unknown action {action!r}", request_id, {"field": "action"}
    )
