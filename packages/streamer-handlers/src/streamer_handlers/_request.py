"""What an action receives about the message it serves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Request:
    """One client request, with the verified identity of its sender.

    The identity comes from the gateway's authorizer context, never from the frame, so
    an action may trust ``user_id``, ``tenant_id`` and ``permissions`` as authenticated.
    """

    id: str
    action: str
    payload: dict[str, Any]
    user_id: str
    tenant_id: str
    permissions: frozenset[str] = frozenset()
    metadata: dict[str, str] = field(default_factory=dict)
    connection_id: str | None = None
