"""API Gateway's WebSocket quotas, enforced locally so that what works here works on AWS."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "API_GATEWAY_MAX_HEADER_BYTES",
    "GatewayLimits",
    "byte_size",
    "header_section_bytes",
    "oversize_error",
]

API_GATEWAY_MAX_HEADER_BYTES = 10240
"""API Gateway's "total combined size of request line and header values", in bytes.

The wording and the figure are those of AWS's quota table for HTTP APIs ("Quotas for
configuring and running an HTTP API in API Gateway"). The WebSocket table lists no header
quota of its own, and the error users report from API Gateway for an oversized header
("HTTP header is larger than 10240 bytes") names the same figure.
"""


@dataclass(frozen=True)
class GatewayLimits:
    """The service's defaults; tests shorten the timeouts to exercise them."""

    max_message_bytes: int = 128 * 1024
    idle_timeout: float = 10 * 60
    max_lifetime: float = 2 * 60 * 60
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
    """The error frame sent just before closing with 1009, so the client learns why."""
    frame = {
        "type": "error",
        "request_id": None,
        "code": "VALIDATION_ERROR",
        "message": f"message of {size} bytes exceeds the {limit}-byte limit",
        "details": {"size": size, "limit": limit},
    }
    return json.dumps(frame, separators=(",", ":"))
