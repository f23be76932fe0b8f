"""The verified caller, and its round trip through API Gateway's authorizer context."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from streamer_core.auth._errors import AuthError, AuthReason


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, for which tenant, with which permissions, until when.

    Permissions are whitespace-free strings because the authorizer context can only carry flat
    scalars: they travel as one space-separated string and must split back unchanged.
    """

    user_id: str
    tenant_id: str
    permissions: frozenset[str] = field(default_factory=frozenset)
    expires_at: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.permissions, frozenset):
            object.__setattr__(self, "permissions", frozenset(self.permissions))
        for permission in self.permissions:
            if not isinstance(permission, str) or not permission or _has_whitespace(permission):
                raise ValueError("permissions must be non-empty strings without whitespace")

    def has_permissions(self, required: Iterable[str]) -> bool:
        """All-of semantics: an action declaring two permissions needs both."""
        if isinstance(required, str):
            return required in self.permissions
        return self.permissions.issuperset(required)

    def to_context(self) -> dict[str, str | int]:
        """Flat values only, because API Gateway rejects nested authorizer context."""
        return {
            "userId": self.user_id,
            "tenantId": self.tenant_id,
            "permissions": " ".join(sorted(self.permissions)),
            "expiresAt": self.expires_at,
        }

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> Principal:
        """Lenient on representation, strict on identity.

        The gateway may hand numbers back as strings, so those are accepted; a context without a
        user or tenant would let a request run unattributed, so that is refused.
        """
        user_id = context.get("userId")
        tenant_id = context.get("tenantId")
        if not isinstance(user_id, str) or not user_id:
            raise AuthError(AuthReason.MALFORMED, "authorizer context lacks userId")
        if not isinstance(tenant_id, str) or not tenant_id:
            raise AuthError(AuthReason.MALFORMED, "authorizer context lacks tenantId")
        return cls(
            user_id=user_id,
            tenant_id=tenant_id,
            permissions=_context_permissions(context.get("permissions")),
            expires_at=_context_int(context.get("expiresAt")),
        )


def _has_whitespace(text: str) -> bool:
    return text.split() != [text]


def _context_permissions(value: Any) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list | tuple | set | frozenset) and all(
        isinstance(item, str) for item in value
    ):
        return frozenset(part for item in value for part in item.split())
    raise AuthError(AuthReason.MALFORMED, "authorizer context permissions are not strings")


def _context_int(value: Any) -> int:
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise AuthError(AuthReason.MALFORMED, "authorizer context expiresAt is not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if math.isfinite(number):
            return int(number)
    raise AuthError(AuthReason.MALFORMED, "authorizer context expiresAt is not a number")
