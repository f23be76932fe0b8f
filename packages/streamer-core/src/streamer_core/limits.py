"""The wire's limits and the request states, without the protocol's models.

API Gateway's WebSocket quotas are declared here once: the handlers, the local gateway and
the clients read them from this module, so a limit cannot differ between them.

Storage needs these few names, and importing them from :mod:`streamer_core.protocol` would
build every pydantic frame model on the way: a large share of a cold ``$connect`` that
only stores a connection. The protocol re-exports them; they are the same objects.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

__all__ = [
    "IDLE_TIMEOUT_SECONDS",
    "MAX_CONNECTION_SECONDS",
    "MAX_FRAME_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_NESTING_DEPTH",
    "RequestStatus",
]

# API Gateway refuses WebSocket messages above 128 KB; enforcing the same limit
# everywhere means what works locally also works on AWS.
MAX_FRAME_BYTES: Final = 128 * 1024
MAX_NESTING_DEPTH: Final = 32
IDLE_TIMEOUT_SECONDS: Final = 10 * 60
"""API Gateway closes a WebSocket connection idle this long."""
MAX_CONNECTION_SECONDS: Final = 2 * 60 * 60
"""API Gateway closes every WebSocket connection at this age, whatever its traffic."""
MAX_HEADER_BYTES: Final = 10240
"""API Gateway's "total combined size of request line and header values", in bytes.

The wording and the figure are those of AWS's quota table for HTTP APIs ("Quotas for
configuring and running an HTTP API in API Gateway"). The WebSocket table lists no header
quota of its own, and the error users report from API Gateway for an oversized header
("HTTP header is larger than 10240 bytes") names the same figure.
"""


class RequestStatus(StrEnum):
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
