"""The wire's limits and the request states, without the protocol's models.

Storage needs these few names, and importing them from :mod:`streamer_core.protocol` would
build every pydantic frame model on the way: about a third of a cold ``$connect`` that
only stores a connection. The protocol re-exports them; they are the same objects.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

__all__ = ["MAX_FRAME_BYTES", "MAX_NESTING_DEPTH", "RequestStatus"]

# API Gateway refuses WebSocket messages above 128 KB; enforcing the same limit
# everywhere means what works locally also works on AWS.
MAX_FRAME_BYTES: Final = 128 * 1024
MAX_NESTING_DEPTH: Final = 32


class RequestStatus(StrEnum):
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
