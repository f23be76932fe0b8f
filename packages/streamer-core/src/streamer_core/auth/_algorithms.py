"""Which signature algorithms are acceptable, and which key family each one needs.

Shared by the verifier and the issuer so that both refuse the same things: ``none`` and every
HMAC algorithm are refused outright, because a verifier holding a public key must never treat it as
a shared secret (the classic RS256-to-HS256 confusion).
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)
PrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)

_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
_EDDSA = "EdDSA"

SUPPORTED_ALGORITHMS = _RSA_ALGORITHMS | frozenset(_EC_CURVES) | {_EDDSA}


def checked_algorithms(algorithms: Iterable[str]) -> tuple[str, ...]:
    """Fail at construction rather than at the first token, when a typo would lock everyone out."""
    names = (algorithms,) if isinstance(algorithms, str) else tuple(algorithms)
    if not names:
        raise ValueError("at least one signature algorithm is required")
    for name in names:
        checked_algorithm(name)
    return tuple(dict.fromkeys(names))


def checked_algorithm(name: str) -> str:
    """Refuse symmetric and unsigned algorithms by name, whatever their spelling."""
    if not isinstance(name, str):
        raise ValueError("algorithm names must be strings")
    folded = name.strip().lower()
    if folded == "none":
        raise ValueError("the 'none' algorithm is never accepted")
    if folded.startswith("hs"):
        raise ValueError(f"HMAC algorithm {name!r} is not accepted: keys here are asymmetric")
    if name not in SUPPORTED_ALGORITHMS:
        supported = ", ".join(sorted(SUPPORTED_ALGORITHMS))
        raise ValueError(f"unsupported algorithm {name!r}; supported: {supported}")
    return name


def key_fits(algorithm: str, key: object) -> bool:
    """Whether ``key`` belongs to the family ``algorithm`` signs with.

    Checked before PyJWT sees the key, so that a token naming one family cannot be verified with a
    key of another.
    """
    if algorithm in _RSA_ALGORITHMS:
        return isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey)
    curve = _EC_CURVES.get(algorithm)
    if curve is not None:
        return (
            isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey)
            and key.curve.name == curve
        )
    if algorithm == _EDDSA:
        return isinstance(
            key,
            ed25519.Ed25519PublicKey
            | ed25519.Ed25519PrivateKey
            | ed448.Ed448PublicKey
            | ed448.Ed448PrivateKey,
        )
    return False
