"""Public keys a verifier trusts, addressed by ``kid`` so keys can be rotated without downtime."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from streamer_core.auth._algorithms import PublicKey

_PUBLIC_KEY_TYPES = (
    rsa.RSAPublicKey,
    ec.EllipticCurvePublicKey,
    ed25519.Ed25519PublicKey,
    ed448.Ed448PublicKey,
)


class KeySet:
    """An immutable ``kid -> public key`` table, parsed once.

    Parsing PEM costs far more than verifying a signature, so keys are turned into key objects
    when the set is built and never again on the hot path. The ``None`` kid is the default key:
    it verifies tokens that carry no ``kid`` or a ``kid`` this set does not list.
    """

    __slots__ = ("_keys",)

    def __init__(self, keys: Mapping[str | None, PublicKey]) -> None:
        if not keys:
            raise ValueError("a KeySet needs at least one key")
        for kid, key in keys.items():
            if kid is not None and (not isinstance(kid, str) or not kid):
                raise ValueError("key ids must be non-empty strings (or None for the default)")
            if not isinstance(key, _PUBLIC_KEY_TYPES):
                raise ValueError(f"key {kid!r} is not an RSA, EC or Ed25519/Ed448 public key")
        self._keys: dict[str | None, PublicKey] = dict(keys)

    @classmethod
    def from_pem(cls, pem: str | bytes, kid: str | None = None) -> KeySet:
        """One key, from a public key or certificate PEM (as found in environment variables)."""
        return cls({kid: load_public_key(pem)})

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], kid: str | None = None) -> KeySet:
        """One key, from a PEM file mounted next to the service."""
        return cls.from_pem(Path(path).read_bytes(), kid)

    @classmethod
    def from_pems(cls, pems: Mapping[str, str]) -> KeySet:
        """Several keys at once, so the old and the new key both verify during a rotation."""
        return cls({kid: load_public_key(pem) for kid, pem in pems.items()})

    @classmethod
    def from_secret_string(cls, value: str) -> KeySet:
        """A secret holds either one PEM or a JSON object ``{"kid": "PEM", ...}`` for rotation."""
        text = value.strip()
        if not text.startswith("{"):
            return cls.from_pem(text)
        try:
            document = json.loads(text)
        except ValueError:
            raise ValueError("key secret looks like JSON but does not parse") from None
        if not isinstance(document, dict) or not document:
            raise ValueError("key secret JSON must be a non-empty object of kid -> PEM")
        if not all(isinstance(pem, str) for pem in document.values()):
            raise ValueError("key secret JSON must map every kid to a PEM string")
        return cls.from_pems(document)

    def get(self, kid: str | None) -> PublicKey | None:
        """The key registered under exactly ``kid``, without falling back to the default."""
        return self._keys.get(kid)

    @property
    def default(self) -> PublicKey | None:
        """The key registered without a kid, if any."""
        return self._keys.get(None)

    def values(self) -> tuple[PublicKey, ...]:
        """Every key, default first, for tokens that do not say which key signed them."""
        default = self._keys.get(None)
        rest = tuple(key for kid, key in self._keys.items() if kid is not None)
        return (default, *rest) if default is not None else rest

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def __iter__(self) -> Iterator[str | None]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"KeySet(kids={list(self._keys)!r})"


@runtime_checkable
class KeySource(Protocol):
    """Anything that can hand over the current keys; called on every verification, so it caches."""

    def keys(self) -> KeySet: ...


def load_public_key(pem: str | bytes) -> PublicKey:
    """Parse a public key or a certificate; refuse private keys so they are not spread around."""
    data = _pem_bytes(pem)
    if b"PRIVATE KEY-----" in data:
        raise ValueError("expected a public key or certificate PEM, got a private key")
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key: object = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except ValueError:
        raise ValueError("not a valid public key or certificate PEM") from None
    if not isinstance(key, _PUBLIC_KEY_TYPES):
        raise ValueError("only RSA, EC and Ed25519/Ed448 public keys are supported")
    return key


def _pem_bytes(pem: str | bytes) -> bytes:
    """Accept PEMs squeezed onto one line with literal ``\\n``, as env variables hold them."""
    text = pem.decode("utf-8") if isinstance(pem, bytes) else pem
    if "\n" not in text and "\\n" in text:
        text = text.replace("\\n", "\n")
    return text.strip().encode("utf-8")
