"""Why a token was refused, in a form a handler can act on without ever echoing the token."""

from __future__ import annotations

from enum import StrEnum


class AuthReason(StrEnum):
    """Machine-readable refusal reasons.

    Handlers count metrics per reason and tests assert on it, so the set is closed and the values
    are stable strings rather than free text.
    """

    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    BAD_SIGNATURE = "bad_signature"
    BAD_ALGORITHM = "bad_algorithm"
    WRONG_ISSUER = "wrong_issuer"
    WRONG_AUDIENCE = "wrong_audience"
    MISSING_CLAIM = "missing_claim"
    TENANT_NOT_ALLOWED = "tenant_not_allowed"
    UNKNOWN_KEY = "unknown_key"
    MALFORMED = "malformed"


_DEFAULT_MESSAGES: dict[AuthReason, str] = {
    AuthReason.EXPIRED: "token has expired",
    AuthReason.NOT_YET_VALID: "token is not valid yet",
    AuthReason.BAD_SIGNATURE: "token signature does not verify",
    AuthReason.BAD_ALGORITHM: "token algorithm is not accepted",
    AuthReason.WRONG_ISSUER: "token issuer is not accepted",
    AuthReason.WRONG_AUDIENCE: "token audience is not accepted",
    AuthReason.MISSING_CLAIM: "token lacks a required claim",
    AuthReason.TENANT_NOT_ALLOWED: "tenant is not allowed",
    AuthReason.UNKNOWN_KEY: "token signing key is unknown",
    AuthReason.MALFORMED: "token is malformed",
}


class AuthError(Exception):
    """A refused token.

    The message is always written by this package, never copied from the token or from a
    third-party exception, so it is safe to log and to send back to the client.
    """

    reason: AuthReason
    message: str

    def __init__(self, reason: AuthReason, message: str | None = None) -> None:
        text = message if message is not None else _DEFAULT_MESSAGES[reason]
        super().__init__(reason, text)
        self.reason = reason
        self.message = text

    @property
    def status_code(self) -> int:
        """403 when the caller is known but its tenant is barred; 401 when it is unknown."""
        return 403 if self.reason is AuthReason.TENANT_NOT_ALLOWED else 401

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.message}"

    def __repr__(self) -> str:
        return f"AuthError(reason={self.reason.value!r}, message={self.message!r})"
