"""Token verification on the connect path: refuse everything doubtful, with a reason.

Every refusal is an :class:`AuthError` whose text is written here; nothing from the token or from
PyJWT's messages reaches it, so an error can be logged or returned to the client as is.
"""

from __future__ import annotations

import base64
import json
import logging
import math
from collections.abc import Collection, Sequence
from typing import Any, NoReturn

import jwt
from jwt import PyJWKClient

from streamer_core.auth._algorithms import PublicKey, checked_algorithms, key_fits
from streamer_core.auth._errors import AuthError, AuthReason
from streamer_core.auth._keys import KeySet, KeySource
from streamer_core.auth._principal import Principal

_logger = logging.getLogger(__name__)

_REQUIRED_CLAIMS = ("exp", "sub", "tenant_id")
_KEY_SEPARATOR = "#"
"""Storage keys join the tenant and the rest with ``#`` (``streamer_core.storage``): a tenant
id holding one could collide with another tenant's keys, so such a token is malformed. The
character is repeated here because auth must not import storage (and boto3 with it)."""
_JWKS_LIFESPAN_SECONDS = 300.0
# The connect path has a budget of seconds, not tens of seconds.
_JWKS_TIMEOUT_SECONDS = 5.0


class TokenVerifier:
    """Turns a bearer token into a :class:`Principal`.

    Everything that does not depend on the token (keys, options, the PyJWT instance) is prepared
    in the constructor, so per-token work is one header read, one signature check and the claim
    checks.
    """

    def __init__(
        self,
        keys: KeySet | KeySource | None = None,
        *,
        jwks_url: str | None = None,
        algorithms: Sequence[str] = ("RS256", "ES256"),
        issuer: str | None = None,
        audience: str | None = None,
        leeway: float = 30,
        allowed_tenants: Collection[str] | None = None,
        max_token_bytes: int = 8192,
    ) -> None:
        if keys is None and jwks_url is None:
            raise ValueError("a key source is required: keys or jwks_url")
        if keys is not None and jwks_url is not None:
            raise ValueError("give keys or jwks_url, not both")
        if keys is not None and not isinstance(keys, KeySet) and not isinstance(keys, KeySource):
            raise TypeError("keys must be a KeySet or an object with a keys() method")
        if not math.isfinite(leeway) or leeway < 0:
            raise ValueError("leeway must be a finite, non-negative number of seconds")
        if max_token_bytes <= 0:
            raise ValueError("max_token_bytes must be positive")
        if allowed_tenants is not None and isinstance(allowed_tenants, str):
            raise TypeError("allowed_tenants must be a collection of tenant ids, not one string")

        self._algorithms = checked_algorithms(algorithms)
        self._allowed = frozenset(self._algorithms)
        self._static_keys = keys if isinstance(keys, KeySet) else None
        self._key_source = keys if keys is not None and not isinstance(keys, KeySet) else None
        self._jwks = _jwks_client(jwks_url) if jwks_url is not None else None
        self._issuer = issuer
        self._audience = audience
        self._leeway = float(leeway)
        self._allowed_tenants = frozenset(allowed_tenants) if allowed_tenants is not None else None
        self._max_token_bytes = max_token_bytes
        # Options are merged once here instead of on every decode call.
        self._jwt = jwt.PyJWT(
            options={
                "require": list(_REQUIRED_CLAIMS),
                "verify_aud": audience is not None,
                "verify_iss": issuer is not None,
            }
        )

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The accepted algorithms, in the order they were configured."""
        return self._algorithms

    def verify(self, token: str) -> Principal:
        """The caller behind ``token``, or :class:`AuthError` (never another exception)."""
        if not isinstance(token, str) or not token:
            raise AuthError(AuthReason.MALFORMED, "token is empty")
        # Size before anything else, so an oversized token costs nothing but its length. Every
        # JWT is ASCII, where characters and bytes coincide; anything else is refused next.
        if len(token) > self._max_token_bytes:
            raise AuthError(AuthReason.MALFORMED, "token is too large")
        if not token.isascii():
            raise AuthError(AuthReason.MALFORMED, "token contains non-ASCII characters")
        try:
            return self._verify(token)
        except AuthError:
            raise
        except Exception as exc:
            # Fail closed on anything unexpected; log the type only, as the text may quote input.
            _logger.warning("token verification failed unexpectedly: %s", type(exc).__name__)
            raise AuthError(AuthReason.MALFORMED) from None

    def _verify(self, token: str) -> Principal:
        header = _read_header(token)
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._allowed:
            raise AuthError(AuthReason.BAD_ALGORITHM)
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise AuthError(AuthReason.MALFORMED, "token kid header is not a string")
        claims = self._decode(token, self._candidate_keys(kid, algorithm))
        return self._principal(claims)

    def _candidate_keys(self, kid: str | None, algorithm: str) -> list[Any]:
        candidates: Sequence[Any] = (
            self._jwks_keys(self._jwks, kid) if self._jwks is not None else self._local_keys(kid)
        )
        fitting = [key for key in candidates if key_fits(algorithm, key)]
        if not fitting:
            raise AuthError(AuthReason.BAD_ALGORITHM, "token algorithm does not match its key")
        return fitting

    def _local_keys(self, kid: str | None) -> Sequence[PublicKey]:
        if self._static_keys is not None:
            keys = self._static_keys
        elif self._key_source is not None:
            keys = _source_keys(self._key_source)
        else:
            raise AuthError(AuthReason.UNKNOWN_KEY, "no signing keys are configured")
        if kid is None:
            return keys.values()
        key = keys.get(kid)
        if key is None:
            key = keys.default
        if key is None:
            raise AuthError(AuthReason.UNKNOWN_KEY)
        return (key,)

    @staticmethod
    def _jwks_keys(client: PyJWKClient, kid: str | None) -> list[Any]:
        try:
            if kid is None:
                return [jwk.key for jwk in client.get_signing_keys()]
            return [client.get_signing_key(kid).key]
        except jwt.PyJWKClientConnectionError as exc:
            _logger.error("JWKS endpoint is unreachable: %s", type(exc).__name__)
            raise AuthError(AuthReason.UNKNOWN_KEY, "signing keys are unavailable") from None
        except jwt.PyJWTError:
            raise AuthError(AuthReason.UNKNOWN_KEY) from None

    def _decode(self, token: str, keys: Sequence[Any]) -> dict[str, Any]:
        # Several candidates only when the token names no key: a signature mismatch moves on to
        # the next key; any other failure happens after a signature verified and is final.
        for key in keys:
            try:
                return self._jwt.decode(
                    token,
                    key,
                    algorithms=self._algorithms,
                    audience=self._audience,
                    issuer=self._issuer,
                    leeway=self._leeway,
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as exc:
                _refuse(exc)
        raise AuthError(AuthReason.BAD_SIGNATURE)

    def _principal(self, claims: dict[str, Any]) -> Principal:
        user_id = _identity_claim(claims, "sub")
        tenant_id = _identity_claim(claims, "tenant_id")
        if _KEY_SEPARATOR in tenant_id:
            raise AuthError(AuthReason.MALFORMED, f"tenant_id claim contains {_KEY_SEPARATOR!r}")
        if self._allowed_tenants is not None and tenant_id not in self._allowed_tenants:
            raise AuthError(AuthReason.TENANT_NOT_ALLOWED)
        try:
            expires_at = int(claims["exp"])
        except (TypeError, ValueError, OverflowError):
            raise AuthError(AuthReason.MALFORMED, "exp claim is not a number") from None
        return Principal(
            user_id=user_id,
            tenant_id=tenant_id,
            permissions=_permissions(claims.get("permissions")),
            expires_at=expires_at,
        )

    def __repr__(self) -> str:
        source = "jwks" if self._jwks is not None else repr(self._static_keys or self._key_source)
        return f"TokenVerifier(keys={source}, algorithms={list(self._algorithms)!r})"


def _jwks_client(url: str) -> PyJWKClient:
    """PyJWT's client caches the key set and limits refetches on unknown kids by itself."""
    try:
        return PyJWKClient(
            url, cache_jwk_set=True, lifespan=_JWKS_LIFESPAN_SECONDS, timeout=_JWKS_TIMEOUT_SECONDS
        )
    except jwt.PyJWKClientError:
        raise ValueError("jwks_url must be an http or https URL") from None


def _read_header(token: str) -> dict[str, Any]:
    """The unverified header, read only to pick a key and refuse bad algorithms early.

    Decoded the same way PyJWT decodes it (so both see the same ``alg``) but without touching the
    payload and signature, which PyJWT's own header helper decodes too: ten times the cost.
    """
    segment, dot, _ = token.partition(".")
    if not dot or not segment:
        raise AuthError(AuthReason.MALFORMED, "token is not a JWT")
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, TypeError, RecursionError):
        raise AuthError(AuthReason.MALFORMED, "token header does not parse") from None
    if not isinstance(header, dict):
        raise AuthError(AuthReason.MALFORMED, "token header is not an object")
    return header


def _refuse(exc: jwt.PyJWTError) -> NoReturn:
    """Translate PyJWT's exception into a reason; its message is deliberately dropped."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        raise AuthError(AuthReason.EXPIRED) from None
    if isinstance(exc, jwt.ImmatureSignatureError):
        raise AuthError(AuthReason.NOT_YET_VALID) from None
    if isinstance(exc, jwt.InvalidIssuerError):
        raise AuthError(AuthReason.WRONG_ISSUER) from None
    if isinstance(exc, jwt.InvalidAudienceError):
        raise AuthError(AuthReason.WRONG_AUDIENCE) from None
    if isinstance(exc, jwt.MissingRequiredClaimError):
        claim = exc.claim if exc.claim in (*_REQUIRED_CLAIMS, "iss", "aud") else "a required"
        raise AuthError(AuthReason.MISSING_CLAIM, f"token lacks the {claim} claim") from None
    if isinstance(exc, jwt.InvalidAlgorithmError):
        raise AuthError(AuthReason.BAD_ALGORITHM) from None
    if isinstance(exc, jwt.InvalidKeyError):
        raise AuthError(
            AuthReason.BAD_ALGORITHM, "token algorithm does not match its key"
        ) from None
    raise AuthError(AuthReason.MALFORMED) from None


def _source_keys(source: KeySource) -> KeySet:
    try:
        return source.keys()
    except Exception as exc:
        _logger.error("signing keys are unavailable: %s", type(exc).__name__)
        raise AuthError(AuthReason.UNKNOWN_KEY, "signing keys are unavailable") from None


def _identity_claim(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name)
    if value is None or value == "":
        raise AuthError(AuthReason.MISSING_CLAIM, f"token lacks the {name} claim")
    if not isinstance(value, str):
        raise AuthError(AuthReason.MALFORMED, f"{name} claim is not a string")
    return value


def _permissions(value: Any) -> frozenset[str]:
    """A list of strings or one space-separated string (the OAuth ``scope`` style)."""
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list) and all(
        isinstance(item, str) and item and item.split() == [item] for item in value
    ):
        return frozenset(value)
    raise AuthError(AuthReason.MALFORMED, "permissions claim must be strings without whitespace")
