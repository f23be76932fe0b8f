"""Exceptions an action raises to choose what its client sees.

Any other exception is a bug in the action: the client then gets INTERNAL_ERROR and no
traceback, because a traceback can leak internals (paths, queries, secrets) to a caller.
"""

from __future__ import annotations

from typing import Any

from streamer_core import ErrorCode


class ActionError(Exception):
    """Fail the request with ``code`` and a message meant for the client."""

    def __init__(self, code: ErrorCode, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})


class Cancelled(Exception):
    """Raised by ``ProgressReporter.report`` once the client has asked to cancel.

    Letting it propagate ends the action; the processor then marks the request CANCELLED.
    An action may catch it to clean up, but should re-raise.
    """
