"""TokenVerifier: the attack matrix, happy paths, key rotation, leeway and configuration."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from streamer_core.auth import (
    AuthError,
    AuthReason,
    KeySet,
    Principal,
    TokenIssuer,
    TokenVerifier,
    generate_key_pair,
)


@dataclass(frozen=True)
class Pair:
    private_pem: str
    public_pem: str
    algorithm: str

    def issuer(self, **kwargs: Any) -> TokenIssuer:
        return TokenIssuer(self.private_pem, algorithm=self.algorithm, **kwargs)

    def sign(self, claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
        return jwt.encode(claims, self.private_pem, algorithm=self.algorithm, headers=headers)


@dataclass(frozen=True)
class Keys:
    rsa: Pair
    rsa_other: Pair
    ec: Pair


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(
        rsa=Pair(*generate_key_pair("RS256"), "RS256"),
        rsa_other=Pair(*generate_key_pair("RS256"), "RS256"),
        ec=Pair(*generate_key_pair("ES256"), "ES256"),
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(value: Any) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "user-1",
        "tenant_id": "acme",
        "permissions": ["reports:read"],
        "iat": now,
        "exp": now + 600,
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def token_parts(token: str) -> list[str]:
    """The token and each of its segments long enough to be recognisable in a message."""
    return [part for part in (token, *token.split(".")) if len(part) >= 8]


def assert_refused(verifier: TokenVerifier, token: Any, reason: AuthReason) -> AuthError:
    with pytest.raises(AuthError) as info:
        verifier.verify(token)
    error = info.value
    assert error.reason is reason, error
    rendered = [
        str(error),
        repr(error),
        error.message,
        *(str(arg) for arg in error.args),
        "".join(traceback.format_exception(error)),
    ]
    if isinstance(token, str):
        for part in token_parts(token):
            for text in rendered:
                assert part not in text
    assert error.__cause__ is None
    return error


# --- the attack matrix -------------------------------------------------------------------------

Attack = Callable[[Keys], tuple[TokenVerifier, str]]


def _default_verifier(keys: Keys, **kwargs: Any) -> TokenVerifier:
    return TokenVerifier(KeySet.from_pem(keys.rsa.public_pem), **kwargs)


def alg_none(keys: Keys) -> tuple[TokenVerifier, str]:
    token = f"{b64json({'alg': 'none', 'typ': 'JWT'})}.{b64json(claims())}."
    return _default_verifier(keys), token


def alg_none_capitalised(keys: Keys) -> tuple[TokenVerifier, str]:
    token = f"{b64json({'alg': 'None', 'typ': 'JWT'})}.{b64json(claims())}."
    return _default_verifier(keys), token


def hs256_with_public_pem(keys: Keys) -> tuple[TokenVerifier, str]:
    signing_input = f"{b64json({'alg': 'HS256', 'typ': 'JWT'})}.{b64json(claims())}"
    secret = keys.rsa.public_pem.encode()
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return _default_verifier(keys), f"{signing_input}.{b64(signature)}"


def rs256_header_on_ec_key(keys: Keys) -> tuple[TokenVerifier, str]:
    verifier = TokenVerifier(KeySet.from_pems({"ec": keys.ec.public_pem}))
    token = keys.rsa.sign(claims(), headers={"kid": "ec"})
    return verifier, token


def algorithm_not_configured(keys: Keys) -> tuple[TokenVerifier, str]:
    verifier = TokenVerifier(KeySet.from_pem(keys.rsa.public_pem), algorithms=("ES256",))
    return verifier, keys.rsa.sign(claims())


def tampered_payload(keys: Keys) -> tuple[TokenVerifier, str]:
    header, _, signature = keys.rsa.sign(claims()).split(".")
    forged = b64json(claims(tenant_id="other-tenant", permissions=["admin"]))
    return _default_verifier(keys), f"{header}.{forged}.{signature}"


def tampered_signature(keys: Keys) -> tuple[TokenVerifier, str]:
    header, payload, signature = keys.rsa.sign(claims()).split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    return _default_verifier(
        keys
    ), f"{header}.{payload}.{signature[:middle]}{flipped}{signature[middle + 1 :]}"


def signed_by_another_key(keys: Keys) -> tuple[TokenVerifier, str]:
    return _default_verifier(keys), keys.rsa_other.sign(claims())


def expired(keys: Keys) -> tuple[TokenVerifier, str]:
    return _default_verifier(keys), keys.rsa.issuer().issue("user-1", "acme", ttl=-3600)


def not_yet_valid(keys: Keys) -> tuple[TokenVerifier, str]:
    issuer = keys.rsa.issuer()
    return _default_verifier(keys), issuer.issue("user-1", "acme", not_before=time.time() + 3600)


def issued_in_the_future(keys: Keys) -> tuple[TokenVerifier, str]:
    return _default_verifier(keys), keys.rsa.sign(claims(iat=int(time.time()) + 3600))


def wrong_issuer(keys: Keys) -> tuple[TokenVerifier, str]:
    token = keys.rsa.issuer(issuer="https://evil.example").issue("user-1", "acme")
    return _default_verifier(keys, issuer="https://idp.example"), token


def missing_issuer(keys: Keys) -> tuple[TokenVerifier, str]:
    return _default_verifier(keys, issuer="https://idp.example"), keys.rsa.sign(claims())


def wrong_audience(keys: Keys) -> tuple[TokenVerifier, str]:
    token = keys.rsa.issuer(audience="another-api").issue("user-1", "acme")
    return _default_verifier(keys, audience="streamer"), token


def missing_sub(keys: Keys) -> tuple[TokenVerifier, str]:
    return _default_verifier(keys), keys.rsa.sign(claims(sub=None))


def empty_sub(keys: Keys) -> tuple[TokenVerifier, str]:
    return _default_verifier(keys), keys.rsa.sign(claims(sub=""))


def missing_tenant(keys: Keys) -> tuple[TokenVerifier, str]:
    return _default_verifier(keys), keys.rsa.sign(claims(tenant_id=None))


def missing_exp(keys: Keys) -> tuple[TokenVerifier, str]:
    return _default_verifier(keys), keys.rsa.sign(claims(exp=None))


def unknown_kid(keys: Keys) -> tuple[TokenVerifier, str]:
    verifier = TokenVerifier(KeySet.from_pems({"k1": keys.rsa.public_pem}))
    return verifier, keys.rsa.sign(claims(), headers={"kid": "k9"})


def tenant_not_allowed(keys: Keys) -> tuple[TokenVerifier, str]:
    verifier = _default_verifier(keys, allowed_tenants=["acme", "globex"])
    return verifier, keys.rsa.issuer().issue("user-1", "initech")


def oversized(keys: Keys) -> tuple[TokenVerifier, str]:
    token = keys.rsa.issuer().issue("user-1", "acme", extra_claims={"padding": "x" * 9000})
    assert len(token) > 8192
    return _default_verifier(keys), token


def tenant_not_a_string(keys: Keys) -> tuple[TokenVerifier, str]:
    return _default_verifier(keys), keys.rsa.sign(claims(tenant_id=["acme"]))


def tenant_with_key_separator(keys: Keys) -> tuple[TokenVerifier, str]:
    """``#`` joins storage keys: ``a#b`` + ``c`` must never meet ``a`` + ``b#c``."""
    return _default_verifier(keys), keys.rsa.issuer().issue("user-1", "acme#globex")


def tenant_with_key_separator_and_allow_list(keys: Keys) -> tuple[TokenVerifier, str]:
    verifier = _default_verifier(keys, allowed_tenants=["acme#globex"])
    return verifier, keys.rsa.issuer().issue("user-1", "acme#globex")


def permissions_not_strings(keys: Keys) -> tuple[TokenVerifier, str]:
    return _default_verifier(keys), keys.rsa.sign(claims(permissions=[1, 2]))


def infinite_expiry(keys: Keys) -> tuple[TokenVerifier, str]:
    return _default_verifier(keys), keys.rsa.sign(claims(exp=float("inf")))


def header_not_an_object(keys: Keys) -> tuple[TokenVerifier, str]:
    _, payload, signature = keys.rsa.sign(claims()).split(".")
    return _default_verifier(keys), f"{b64json(['RS256'])}.{payload}.{signature}"


def kid_not_a_string(keys: Keys) -> tuple[TokenVerifier, str]:
    header = b64json({"alg": "RS256", "kid": 7})
    _, payload, signature = keys.rsa.sign(claims()).split(".")
    return _default_verifier(keys), f"{header}.{payload}.{signature}"


ATTACKS: list[tuple[Attack, AuthReason]] = [
    (alg_none, AuthReason.BAD_ALGORITHM),
    (alg_none_capitalised, AuthReason.BAD_ALGORITHM),
    (hs256_with_public_pem, AuthReason.BAD_ALGORITHM),
    (rs256_header_on_ec_key, AuthReason.BAD_ALGORITHM),
    (algorithm_not_configured, AuthReason.BAD_ALGORITHM),
    (tampered_payload, AuthReason.BAD_SIGNATURE),
    (tampered_signature, AuthReason.BAD_SIGNATURE),
    (signed_by_another_key, AuthReason.BAD_SIGNATURE),
    (expired, AuthReason.EXPIRED),
    (not_yet_valid, AuthReason.NOT_YET_VALID),
    (issued_in_the_future, AuthReason.NOT_YET_VALID),
    (wrong_issuer, AuthReason.WRONG_ISSUER),
    (missing_issuer, AuthReason.MISSING_CLAIM),
    (wrong_audience, AuthReason.WRONG_AUDIENCE),
    (missing_sub, AuthReason.MISSING_CLAIM),
    (empty_sub, AuthReason.MISSING_CLAIM),
    (missing_tenant, AuthReason.MISSING_CLAIM),
    (missing_exp, AuthReason.MISSING_CLAIM),
    (unknown_kid, AuthReason.UNKNOWN_KEY),
    (tenant_not_allowed, AuthReason.TENANT_NOT_ALLOWED),
    (oversized, AuthReason.MALFORMED),
    (tenant_not_a_string, AuthReason.MALFORMED),
    (tenant_with_key_separator, AuthReason.MALFORMED),
    (tenant_with_key_separator_and_allow_list, AuthReason.MALFORMED),
    (permissions_not_strings, AuthReason.MALFORMED),
    (infinite_expiry, AuthReason.MALFORMED),
    (header_not_an_object, AuthReason.MALFORMED),
    (kid_not_a_string, AuthReason.MALFORMED),
]


@pytest.mark.parametrize(("attack", "reason"), ATTACKS, ids=[a.__name__ for a, _ in ATTACKS])
def test_attack_is_refused_with_its_reason(
    keys: Keys, attack: Attack, reason: AuthReason, caplog: pytest.LogCaptureFixture
) -> None:
    verifier, token = attack(keys)
    with caplog.at_level(logging.DEBUG):
        error = assert_refused(verifier, token, reason)
    assert error.status_code == (403 if reason is AuthReason.TENANT_NOT_ALLOWED else 401)
    for part in token_parts(token):
        assert part not in caplog.text


def test_missing_claim_message_names_the_claim(keys: Keys) -> None:
    error = assert_refused(
        _default_verifier(keys), keys.rsa.sign(claims(tenant_id=None)), AuthReason.MISSING_CLAIM
    )
    assert "tenant_id" in error.message


def test_oversized_token_is_refused_for_its_size_alone(keys: Keys) -> None:
    _, token = oversized(keys)
    error = assert_refused(_default_verifier(keys), token, AuthReason.MALFORMED)
    assert "large" in error.message
    roomy = _default_verifier(keys, max_token_bytes=64 * 1024)
    assert roomy.verify(token).user_id == "user-1"


GARBAGE = [
    "",
    "garbage",
    "a.b.c",
    "a.b",
    "....",
    "eyJ.eyJ.",
    "Bearer abc.def.ghi",
    "eyJhbGciOiJSUzI1NiJ9",
    "eyJhbGciOiJSUzI1NiJ9.%%%.###",
    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
    "ünïcödé.tøken.here",
    "x" * 100_000,
]


@pytest.mark.parametrize("token", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_is_malformed_or_badly_signed(keys: Keys, token: str) -> None:
    with pytest.raises(AuthError) as info:
        _default_verifier(keys).verify(token)
    assert info.value.reason in {AuthReason.MALFORMED, AuthReason.BAD_SIGNATURE}
    for part in token_parts(token):
        assert part not in str(info.value)
        assert part not in repr(info.value)


@pytest.mark.parametrize("token", [None, b"eyJ.eyJ.sig", 42])
def test_non_string_input_is_malformed(keys: Keys, token: Any) -> None:
    assert_refused(_default_verifier(keys), token, AuthReason.MALFORMED)


@settings(max_examples=300)
@given(token=st.one_of(st.text(max_size=300), st.from_regex(r"eyJ[A-Za-z0-9_.-]{0,200}")))
def test_any_text_raises_auth_error_only(keys: Keys, token: str) -> None:
    verifier = _default_verifier(keys)
    with pytest.raises(AuthError):
        verifier.verify(token)


@pytest.fixture(scope="module")
def valid_token(keys: Keys) -> str:
    return keys.rsa.sign(claims(exp=int(time.time()) + 3600))


@settings(max_examples=150)
@given(segment=st.binary(max_size=120))
def test_any_header_bytes_raise_auth_error_only(
    keys: Keys, valid_token: str, segment: bytes
) -> None:
    _, payload, signature = valid_token.split(".")
    with pytest.raises(AuthError):
        _default_verifier(keys).verify(f"{b64(segment)}.{payload}.{signature}")


# --- happy paths -------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["rsa", "ec"])
def test_valid_token_becomes_a_principal(keys: Keys, which: str) -> None:
    pair: Pair = getattr(keys, which)
    verifier = TokenVerifier(
        KeySet.from_pem(pair.public_pem),
        issuer="https://idp.example",
        audience="streamer",
        allowed_tenants={"acme"},
    )
    issuer = pair.issuer(kid="k1", issuer="https://idp.example", audience="streamer")
    token = issuer.issue("user-1", "acme", ["reports:read", "reports:write"], ttl=600)
    principal = verifier.verify(token)
    assert principal.user_id == "user-1"
    assert principal.tenant_id == "acme"
    assert principal.permissions == frozenset({"reports:read", "reports:write"})
    assert abs(principal.expires_at - (time.time() + 600)) <= 2


def test_rs256_and_es256_keys_side_by_side(keys: Keys) -> None:
    verifier = TokenVerifier(KeySet.from_pems({"r": keys.rsa.public_pem, "e": keys.ec.public_pem}))
    assert verifier.verify(keys.rsa.issuer(kid="r").issue("u-r", "acme")).user_id == "u-r"
    assert verifier.verify(keys.ec.issuer(kid="e").issue("u-e", "acme")).user_id == "u-e"


def test_iss_and_aud_are_ignored_unless_configured(keys: Keys) -> None:
    token = keys.rsa.issuer(issuer="anyone", audience="anything").issue("user-1", "acme")
    assert _default_verifier(keys).verify(token).user_id == "user-1"


def test_audience_list_in_token_matches_configured_audience(keys: Keys) -> None:
    token = keys.rsa.sign(claims(aud=["other", "streamer"]))
    assert _default_verifier(keys, audience="streamer").verify(token).tenant_id == "acme"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["a:read", "b:write"], frozenset({"a:read", "b:write"})),
        ("a:read  b:write", frozenset({"a:read", "b:write"})),
        ("", frozenset()),
        ([], frozenset()),
        (None, frozenset()),
    ],
)
def test_permissions_as_list_or_space_separated_string(
    keys: Keys, value: Any, expected: frozenset[str]
) -> None:
    principal = _default_verifier(keys).verify(keys.rsa.sign(claims(permissions=value)))
    assert principal.permissions == expected


@pytest.mark.parametrize("value", [["a b"], [""], 7, {"a": 1}])
def test_permissions_of_other_shapes_are_malformed(keys: Keys, value: Any) -> None:
    assert_refused(
        _default_verifier(keys), keys.rsa.sign(claims(permissions=value)), AuthReason.MALFORMED
    )


# --- key rotation and selection ----------------------------------------------------------------


def test_rotation_both_keys_verify_then_the_removed_one_is_unknown(keys: Keys) -> None:
    old = keys.rsa.issuer(kid="2026-01").issue("user-1", "acme")
    new = keys.rsa_other.issuer(kid="2026-02").issue("user-1", "acme")
    during = TokenVerifier(
        KeySet.from_pems({"2026-01": keys.rsa.public_pem, "2026-02": keys.rsa_other.public_pem})
    )
    assert during.verify(old).user_id == "user-1"
    assert during.verify(new).user_id == "user-1"
    after = TokenVerifier(KeySet.from_pems({"2026-02": keys.rsa_other.public_pem}))
    assert after.verify(new).user_id == "user-1"
    assert_refused(after, old, AuthReason.UNKNOWN_KEY)


def test_kid_does_not_select_another_kids_key(keys: Keys) -> None:
    verifier = TokenVerifier(
        KeySet.from_pems({"a": keys.rsa.public_pem, "b": keys.rsa_other.public_pem})
    )
    token = keys.rsa.issuer(kid="b").issue("user-1", "acme")
    assert_refused(verifier, token, AuthReason.BAD_SIGNATURE)


def test_token_without_kid_tries_every_key(keys: Keys) -> None:
    verifier = TokenVerifier(
        KeySet.from_pems({"a": keys.rsa.public_pem, "b": keys.rsa_other.public_pem})
    )
    assert verifier.verify(keys.rsa_other.issuer().issue("u-b", "acme")).user_id == "u-b"
    assert verifier.verify(keys.rsa.issuer().issue("u-a", "acme")).user_id == "u-a"


def test_token_without_kid_and_no_matching_key_is_badly_signed(keys: Keys) -> None:
    verifier = TokenVerifier(KeySet.from_pems({"a": keys.rsa.public_pem}))
    assert_refused(verifier, keys.rsa_other.issuer().issue("u", "acme"), AuthReason.BAD_SIGNATURE)


def test_default_key_verifies_tokens_whose_kid_it_does_not_list(keys: Keys) -> None:
    verifier = _default_verifier(keys)
    assert verifier.verify(keys.rsa.issuer(kid="whatever").issue("u", "acme")).user_id == "u"


def test_expiry_is_reported_even_when_several_keys_are_tried(keys: Keys) -> None:
    verifier = TokenVerifier(
        KeySet.from_pems({"a": keys.rsa_other.public_pem, "b": keys.rsa.public_pem})
    )
    assert_refused(verifier, keys.rsa.issuer().issue("u", "acme", ttl=-600), AuthReason.EXPIRED)


class CountingSource:
    def __init__(self, keys: KeySet) -> None:
        self.calls = 0
        self._keys = keys

    def keys(self) -> KeySet:
        self.calls += 1
        return self._keys


class FailingSource:
    def keys(self) -> KeySet:
        raise ConnectionError("secret store unreachable")


def test_key_source_is_consulted_per_verification(keys: Keys) -> None:
    source = CountingSource(KeySet.from_pem(keys.rsa.public_pem))
    verifier = TokenVerifier(source)
    token = keys.rsa.issuer().issue("user-1", "acme")
    for _ in range(3):
        verifier.verify(token)
    assert source.calls == 3


def test_failing_key_source_refuses_with_unknown_key(keys: Keys) -> None:
    token = keys.rsa.issuer().issue("user-1", "acme")
    error = assert_refused(TokenVerifier(FailingSource()), token, AuthReason.UNKNOWN_KEY)
    assert "unreachable" not in error.message


# --- leeway ------------------------------------------------------------------------------------


def test_default_leeway_accepts_a_token_just_expired(keys: Keys) -> None:
    token = keys.rsa.issuer().issue("user-1", "acme", ttl=-10)
    assert _default_verifier(keys).verify(token).user_id == "user-1"
    assert_refused(_default_verifier(keys, leeway=0), token, AuthReason.EXPIRED)


def test_default_leeway_accepts_a_token_valid_a_moment_from_now(keys: Keys) -> None:
    token = keys.rsa.issuer().issue("user-1", "acme", not_before=time.time() + 10)
    assert _default_verifier(keys).verify(token).user_id == "user-1"
    assert_refused(_default_verifier(keys, leeway=0), token, AuthReason.NOT_YET_VALID)


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "algorithms",
    [("none",), ("RS256", "NONE"), ("HS256",), ("RS256", "hs512"), ("XX999",), ()],
)
def test_unsafe_or_unknown_algorithms_are_refused_at_construction(
    keys: Keys, algorithms: tuple[str, ...]
) -> None:
    with pytest.raises(ValueError, match=r"algorithm|none|HMAC"):
        TokenVerifier(KeySet.from_pem(keys.rsa.public_pem), algorithms=algorithms)


def test_configured_algorithms_are_kept_in_order(keys: Keys) -> None:
    verifier = TokenVerifier(
        KeySet.from_pem(keys.rsa.public_pem), algorithms=["PS256", "RS256", "PS256"]
    )
    assert verifier.algorithms == ("PS256", "RS256")


def test_ps256_can_be_enabled(keys: Keys) -> None:
    verifier = TokenVerifier(KeySet.from_pem(keys.rsa.public_pem), algorithms=("PS256",))
    token = TokenIssuer(keys.rsa.private_pem, algorithm="PS256").issue("user-1", "acme")
    assert verifier.verify(token).user_id == "user-1"
    assert_refused(verifier, keys.rsa.issuer().issue("u", "acme"), AuthReason.BAD_ALGORITHM)


def test_a_key_source_is_required() -> None:
    with pytest.raises(ValueError, match="key source"):
        TokenVerifier()


def test_keys_and_jwks_url_are_exclusive(keys: Keys) -> None:
    with pytest.raises(ValueError, match="not both"):
        TokenVerifier(KeySet.from_pem(keys.rsa.public_pem), jwks_url="http://127.0.0.1:1/jwks")


@pytest.mark.parametrize(
    "kwargs", [{"leeway": -1}, {"leeway": float("nan")}, {"max_token_bytes": 0}]
)
def test_nonsensical_limits_are_refused(keys: Keys, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"leeway|max_token_bytes"):
        TokenVerifier(KeySet.from_pem(keys.rsa.public_pem), **kwargs)


def test_allowed_tenants_as_one_string_is_refused(keys: Keys) -> None:
    with pytest.raises(TypeError, match="allowed_tenants"):
        TokenVerifier(KeySet.from_pem(keys.rsa.public_pem), allowed_tenants="acme")


def test_keys_of_the_wrong_type_are_refused() -> None:
    with pytest.raises(TypeError, match="KeySet"):
        TokenVerifier(keys="-----BEGIN PUBLIC KEY-----")  # type: ignore[arg-type]


def test_verified_principal_round_trips_through_context(keys: Keys) -> None:
    token = keys.rsa.issuer().issue("user-1", "acme", ["a", "b"])
    principal = _default_verifier(keys).verify(token)
    assert Principal.from_context(principal.to_context()) == principal
