"""Minting tokens, for the local stack, the client CLI and tests; production tokens come from an
identity provider, but they have the same shape as these."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from streamer_core.auth._algorithms import PrivateKey, checked_algorithm, key_fits

_RESERVED_CLAIMS = frozenset({"sub", "tenant_id", "permissions", "iat", "nbf", "exp", "iss", "aud"})
_EC_CURVES: dict[str, ec.EllipticCurve] = {
    "ES256": ec.SECP256R1(),
    "ES384": ec.SECP384R1(),
    "ES512": ec.SECP521R1(),
}


class TokenIssuer:
    """Signs tokens with one private key, parsed once so that minting stays cheap."""

    def __init__(
        self,
        private_key_pem: str | bytes,
        *,
        algorithm: str = "RS256",
        kid: str | None = None,
        issuer: str | None = None,
        audience: str | None = None,
    ) -> None:
        self._algorithm = checked_algorithm(algorithm)
        data = (
            private_key_pem.encode("utf-8") if isinstance(private_key_pem, str) else private_key_pem
        )
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise ValueError("not a valid unencrypted private key PEM") from None
        if not isinstance(key, PrivateKey) or not key_fits(self._algorithm, key):
            raise ValueError(f"the private key cannot sign {self._algorithm}")
        self._key: PrivateKey = key
        self._kid = kid
        self._issuer = issuer
        self._audience = audience
        self._headers: dict[str, Any] | None = {"kid": kid} if kid is not None else None

    @property
    def algorithm(self) -> str:
        """The algorithm written into every token's header."""
        return self._algorithm

    @property
    def kid(self) -> str | None:
        """The key id written into every token's header, if any."""
        return self._kid

    @property
    def public_key_pem(self) -> str:
        """The matching public key, so a local verifier can be built from the issuer alone."""
        return (
            self._key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
        )

    def issue(
        self,
        sub: str,
        tenant_id: str,
        permissions: Iterable[str] = (),
        *,
        ttl: float = 3600,
        not_before: float | None = None,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> str:
        """A signed token valid from ``not_before`` (epoch seconds, default now) for ``ttl`` s.

        A negative ``ttl`` yields an already expired token, which tests of expiry rely on. Extra
        claims may not overwrite the ones set here, so a caller cannot mint a token whose identity
        disagrees with the arguments it passed.
        """
        if not sub or not tenant_id:
            raise ValueError("sub and tenant_id must be non-empty")
        now = time.time()
        granted = permissions.split() if isinstance(permissions, str) else list(permissions)
        claims: dict[str, Any] = {}
        if extra_claims:
            clashing = _RESERVED_CLAIMS.intersection(extra_claims)
            if clashing:
                raise ValueError(f"extra_claims may not set {sorted(clashing)}")
            claims.update(extra_claims)
        claims.update(
            sub=sub,
            tenant_id=tenant_id,
            permissions=granted,
            iat=int(now),
            nbf=int(now if not_before is None else not_before),
            exp=int(now + ttl),
        )
        if self._issuer is not None:
            claims["iss"] = self._issuer
        if self._audience is not None:
            claims["aud"] = self._audience
        return jwt.encode(claims, self._key, algorithm=self._algorithm, headers=self._headers)

    def __repr__(self) -> str:
        return f"TokenIssuer(algorithm={self._algorithm!r}, kid={self._kid!r})"


def generate_key_pair(algorithm: str = "RS256") -> tuple[str, str]:
    """A fresh ``(private_pem, public_pem)`` pair for ``algorithm``: RSA 2048, or the EC curve or
    Ed25519 key that the algorithm names."""
    name = checked_algorithm(algorithm)
    private_key: PrivateKey
    if name in _EC_CURVES:
        private_key = ec.generate_private_key(_EC_CURVES[name])
    elif name == "EdDSA":
        private_key = ed25519.Ed25519PrivateKey.generate()
    else:
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    public_pem = (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
    return private_pem, public_pem
