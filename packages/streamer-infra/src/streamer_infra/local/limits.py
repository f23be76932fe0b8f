"""API Gateway's WebSocket quotas, enforced locally so that what works here works on AWS."""

from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = ["GatewayLimits", "byte_size", "oversize_error"]


@dataclass(frozen=True)
class GatewayLimits:
    """The service's defaults; tests shorten the timeouts to exercise them."""

    max_message_bytes: int = 128 * 1024
    idle_timeout: float = 10 * 60
    max_lifetime: float = 2 * 60 * 60


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
