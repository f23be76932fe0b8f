"""TokenIssuer, generate_key_pair and redact_tokens."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given
from hypothesis import strategies as st
from streamer_core.auth import (
    KeySet,
    TokenIssuer,
    TokenVerifier,
    generate_key_pair,
    redact_tokens,
)


@pytest.fixture(scope="module")
def rsa_pair() -> tuple[str, str]:
    return generate_key_pair("RS256")


@pytest.fixture(scope="module")
def ec_pair() -> tuple[str, str]:
    return generate_key_pair("ES256")


def decode(token: str, public_pem: str, algorithm: str, **kwargs: Any) -> dict[str, Any]:
    return jwt.decode(token, public_pem, algorithms=[algorithm], **kwargs)


# --- generate_key_pair -------------------------------------------------------------------------


def test_rs256_pair_is_rsa_2048(rsa_pair: tuple[str, str]) -> None:
    private_key = serialization.load_pem_private_key(rsa_pair[0].encode(), password=None)
    public_key = serialization.load_pem_public_key(rsa_pair[1].encode())
    assert isinstance(private_key, rsa.RSAPrivateKey)
    assert isinstance(public_key, rsa.RSAPublicKey)
    assert private_key.key_size == 2048
    assert private_key.public_key().public_numbers() == public_key.public_numbers()


def test_es256_pair_is_p256(ec_pair: tuple[str, str]) -> None:
    private_key = serialization.load_pem_private_key(ec_pair[0].encode(), password=None)
    assert isinstance(private_key, ec.EllipticCurvePrivateKey)
    assert private_key.curve.name == "secp256r1"
    assert ec_pair[1].startswith("-----BEGIN PUBLIC KEY-----")


def test_eddsa_pair_is_ed25519() -> None:
    private_pem, _ = generate_key_pair("EdDSA")
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)


@pytest.mark.parametrize("algorithm", ["none", "HS256", "RS1"])
def test_generate_refuses_unsupported_algorithms(algorithm: str) -> None:
    with pytest.raises(ValueError, match=r"algorithm|none|HMAC"):
        generate_key_pair(algorithm)


# --- TokenIssuer -------------------------------------------------------------------------------


def test_issued_claims_and_header(rsa_pair: tuple[str, str]) -> None:
    issuer = TokenIssuer(rsa_pair[0], kid="k1", issuer="https://idp.example", audience="streamer")
    before = int(time.time())
    token = issuer.issue("user-1", "acme", ["b", "a"], ttl=120, extra_claims={"name": "Ada"})
    after = int(time.time())
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "kid": "k1", "typ": "JWT"}
    claims = decode(token, rsa_pair[1], "RS256", audience="streamer")
    assert claims["sub"] == "user-1"
    assert claims["tenant_id"] == "acme"
    assert claims["permissions"] == ["b", "a"]
    assert claims["iss"] == "https://idp.example"
    assert claims["aud"] == "streamer"
    assert claims["name"] == "Ada"
    assert before <= claims["iat"] <= after
    assert claims["nbf"] == claims["iat"]
    assert before + 120 <= claims["exp"] <= after + 120


def test_optional_claims_and_kid_are_omitted_when_unset(ec_pair: tuple[str, str]) -> None:
    token = TokenIssuer(ec_pair[0], algorithm="ES256").issue("user-1", "acme")
    assert "kid" not in jwt.get_unverified_header(token)
    claims = decode(token, ec_pair[1], "ES256")
    assert "iss" not in claims
    assert "aud" not in claims
    assert claims["permissions"] == []


def test_permissions_given_as_a_string_are_split(rsa_pair: tuple[str, str]) -> None:
    token = TokenIssuer(rsa_pair[0]).issue("u", "t", "a:read b:write")
    assert decode(token, rsa_pair[1], "RS256")["permissions"] == ["a:read", "b:write"]


def test_not_before_is_absolute(rsa_pair: tuple[str, str]) -> None:
    token = TokenIssuer(rsa_pair[0]).issue("u", "t", not_before=2_000_000_000, ttl=10)
    claims = decode(token, rsa_pair[1], "RS256", options={"verify_nbf": False})
    assert claims["nbf"] == 2_000_000_000


def test_extra_claims_cannot_override_identity(rsa_pair: tuple[str, str]) -> None:
    issuer = TokenIssuer(rsa_pair[0])
    with pytest.raises(ValueError, match="tenant_id"):
        issuer.issue("u", "acme", extra_claims={"tenant_id": "other"})


@pytest.mark.parametrize(("sub", "tenant"), [("", "t"), ("u", "")])
def test_identity_is_required(rsa_pair: tuple[str, str], sub: str, tenant: str) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        TokenIssuer(rsa_pair[0]).issue(sub, tenant)


@pytest.mark.parametrize("algorithm", ["none", "HS256", "hs384", "ES256", "XX"])
def test_issuer_refuses_unsafe_or_mismatched_algorithms(
    rsa_pair: tuple[str, str], algorithm: str
) -> None:
    with pytest.raises(ValueError, match=r"algorithm|none|HMAC|cannot sign"):
        TokenIssuer(rsa_pair[0], algorithm=algorithm)


def test_issuer_refuses_a_public_key(rsa_pair: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match="private key"):
        TokenIssuer(rsa_pair[1])


def test_public_key_pem_builds_a_matching_verifier(ec_pair: tuple[str, str]) -> None:
    issuer = TokenIssuer(ec_pair[0].encode(), algorithm="ES256", kid="local")
    assert (issuer.algorithm, issuer.kid) == ("ES256", "local")
    verifier = TokenVerifier(KeySet.from_pem(issuer.public_key_pem))
    assert verifier.verify(issuer.issue("user-1", "acme", ["x"])).permissions == {"x"}
    assert "PRIVATE" not in repr(issuer)


# --- redact_tokens -----------------------------------------------------------------------------


def test_redacts_tokens_in_headers_urls_and_json(rsa_pair: tuple[str, str]) -> None:
    token = TokenIssuer(rsa_pair[0]).issue("user-1", "acme")
    text = (
        f"Authorization: Bearer {token}\n"
        f"GET /ws?token={token}&x=1\n"
        f'{{"Sec-WebSocket-Protocol": "bearer, {token}"}}'
    )
    redacted = redact_tokens(text)
    assert token not in redacted
    for segment in token.split("."):
        assert segment not in redacted
    assert redacted.count("[REDACTED]") == 3
    assert redacted.startswith("Authorization: Bearer [REDACTED]\nGET /ws?token=[REDACTED]&x=1")


def test_redacts_unsigned_tokens() -> None:
    unsigned = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."
    assert redact_tokens(f"got {unsigned} here") == "got [REDACTED] here"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "nothing to see",
        "keyJohn.smith.example is a word",
        "version 1.2.3",
        "eyJ alone",
        "header only eyJhbGciOiJSUzI1NiJ9 here",
    ],
)
def test_leaves_other_text_alone(text: str) -> None:
    assert redact_tokens(text) == text


@given(st.text(alphabet=st.characters(blacklist_characters="eE"), max_size=200))
def test_text_without_a_token_start_is_unchanged(text: str) -> None:
    assert redact_tokens(text) == text
