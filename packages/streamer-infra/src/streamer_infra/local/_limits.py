"""API Gateway's WebSocket quotas, enforced locally so that what works here works on AWS."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from streamer_core.limits import (
    IDLE_TIMEOUT_SECONDS,
    MAX_CONNECTION_SECONDS,
    MAX_FRAME_BYTES,
    MAX_HEADER_BYTES,
)

__all__ = [
    "API_GATEWAY_MAX_HEADER_BYTES",
    "GatewayLimits",
    "byte_size",
    "header_section_bytes",
    "oversize_error",
]

API_GATEWAY_MAX_HEADER_BYTES = MAX_HEADER_BYTES
"""`streamer_core.limits.MAX_HEADER_BYTES`, under the name the gateway's readers look for."""


@dataclass(frozen=True)
class GatewayLimits:
    """The service's defaults; tests shorten the timeouts to exercise them."""

    max_message_bytes: int = MAX_FRAME_BYTES
    idle_timeout: float = IDLE_TIMEOUT_SECONDS
    max_lifetime: float = MAX_CONNECTION_SECONDS
    max_header_bytes: int = API_GATEWAY_MAX_HEADER_BYTES
    """Request line plus headers of the upgrade request, counted by `header_section_bytes`."""


def header_section_bytes(request_line: bytes, headers: Iterable[tuple[bytes, bytes]]) -> int:
    """The size of a request's head as sent: request line and every header line.

    AWS words the quota as the request line plus header *values*; names and separators are
    counted here too, the stricter reading, so that a handshake accepted locally is accepted
    by API Gateway whichever reading the service applies.
    """
    total = len(request_line) + 2
    for name, value in headers:
        total += len(name) + len(value) + 4
    return total


def byte_size(data: str | bytes, limit: int) -> int:
    """UTF-8 size, without encoding text that cannot be over the limit (4 bytes a char)."""
    if isinstance(data, bytes):
        return len(data)
    if len(data) * 4 <= limit:
        return len(data)
    return len(data.encode("utf-8"))


def oversize_error(size: int, limit: int) -> str:
    """The error frame sent just before closing with 1009, so the client learns why; built
    from the protocol's own model, so its shape is the one every other error has."""
    from streamer_core import ErrorCode, ErrorFrame

    frame = ErrorFrame(
        request_id=None,
        code=ErrorCode.VALIDATION_ERROR,
        message=f"message of {size} bytes exceeds the {limit}-byte limit",
        details={"size": size, "limit": limit},
    )
    return frame.model_dump_json()
