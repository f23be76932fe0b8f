"""What the stores hand back: plain frozen values, free of DynamoDB types."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from streamer_core.limits import RequestStatus
from streamer_core.storage.codec import compose_key

if TYPE_CHECKING:
    # Models of the protocol: loaded only by code that reads or writes a request.
    from streamer_core.protocol import ErrorInfo, ProgressState, RequestSnapshot


@dataclass(frozen=True)
class Connection:
    """A live WebSocket connection and who opened it.

    It carries the principal's fields rather than a Principal so that storage never needs
    the JWT dependencies.
    """

    connection_id: str
    user_id: str
    tenant_id: str
    permissions: frozenset[str]
    connected_at: int
    expires_at: int
    domain_name: str | None = None
    stage: str | None = None


_REQUEST_KEY_FIELDS = ("tenant_id", "user_id", "request_id")


class RequestKey(NamedTuple):
    """Identifies a request by its owner, so one user can never address another's work."""

    tenant_id: str
    user_id: str
    request_id: str

    @property
    def owner(self) -> str:
        return compose_key(self.tenant_id, self.user_id)

    def to_json(self) -> str:
        return json.dumps(self._asdict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, s: str) -> RequestKey:
        """Read an SQS message body, refusing anything that is not exactly a request key."""
        try:
            data = json.loads(s)
        except ValueError as exc:
            raise ValueError("request key is not valid JSON") from exc
        if (
            not isinstance(data, dict)
            or set(data) != set(_REQUEST_KEY_FIELDS)
            or not all(isinstance(data[name], str) and data[name] for name in _REQUEST_KEY_FIELDS)
        ):
            raise ValueError(
                f"request key must have exactly the string fields {_REQUEST_KEY_FIELDS}"
            )
        return cls(data["tenant_id"], data["user_id"], data["request_id"])


@dataclass(frozen=True)
class RequestRecord:
    key: RequestKey
    action: str
    payload: dict[str, Any]
    payload_hash: str
    status: RequestStatus
    connection_id: str | None
    created_at: int
    updated_at: int
    expires_at: int
    progress: ProgressState | None
    result: Any
    error: ErrorInfo | None
    attempts: int
    lease_until: int | None
    cancel_requested: bool
    metadata: dict[str, str]
    followers: frozenset[str] = frozenset()
    """Connections that get the request's progress and final frame: the one that submitted
    it, any that resent its id, and any that asked its ``status`` while it ran."""

    def snapshot(self) -> RequestSnapshot:
        from streamer_core.protocol import RequestSnapshot

        return RequestSnapshot(
            request_id=self.key.request_id,
            action=self.action,
            status=self.status,
            progress=self.progress,
            result=self.result,
            error=self.error,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )
