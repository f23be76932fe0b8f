"""Failures a storage caller is expected to handle, each with what it needs to answer the client."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streamer_core.protocol import RequestStatus


class StorageError(Exception):
    """Root of every storage failure, so a handler can map them to one error frame in one place."""


class ConflictError(StorageError):
    """A request id was reused for different work; the client must pick a fresh id (CONFLICT)."""

    def __init__(self, request_id: str, message: str | None = None) -> None:
        super().__init__(
            message or f"request {request_id!r} already exists with a different action or payload"
        )
        self.request_id = request_id


class IllegalTransitionError(StorageError):
    """A state change the request's current state forbids.

    `current` tells the caller whether the work already finished (a duplicate delivery to
    ignore) or never existed (``None``), which call for different answers.
    """

    def __init__(self, request_id: str, current: RequestStatus | None, target: str) -> None:
        shown = current.value if current is not None else "absent"
        super().__init__(f"request {request_id!r} cannot go from {shown} to {target}")
        self.request_id = request_id
        self.current = current
        self.target = target


class ItemTooLargeError(StorageError):
    """A value would push an item past what DynamoDB or a WebSocket frame can carry.

    Refused before the write so the caller can fail the request cleanly instead of
    storing something that could never be delivered.
    """

    def __init__(self, field: str, size: int, limit: int) -> None:
        super().__init__(f"{field} is {size} bytes encoded; the limit is {limit}")
        self.field = field
        self.size = size
        self.limit = limit


class InvalidTokenError(StorageError, ValueError):
    """A pagination token that this store did not hand out for this query (client input)."""


class UnprocessedItemsError(StorageError):
    """DynamoDB kept refusing part of a batch; raised rather than silently leaving items behind."""

    def __init__(self, remaining: int) -> None:
        super().__init__(f"{remaining} items were still unprocessed after every retry")
        self.remaining = remaining
