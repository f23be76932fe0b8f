"""Principal, AuthError and AuthReason: the values handlers pass around after verification."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from streamer_core.auth import AuthError, AuthReason, Principal

permission = st.text(min_size=1, max_size=20).filter(lambda text: text.split() == [text])
principals = st.builds(
    Principal,
    user_id=st.text(min_size=1, max_size=40),
    tenant_id=st.text(min_size=1, max_size=40),
    permissions=st.frozensets(permission, max_size=6),
    expires_at=st.integers(min_value=0, max_value=2**53),
)


@given(principals)
def test_context_round_trip(principal: Principal) -> None:
    context = principal.to_context()
    assert all(isinstance(value, str | int) for value in context.values())
    assert Principal.from_context(context) == principal


@given(principals)
def test_context_round_trip_with_numbers_as_strings(principal: Principal) -> None:
    stringly = {key: str(value) for key, value in principal.to_context().items()}
    assert Principal.from_context(stringly) == principal


def test_context_shape() -> None:
    principal = Principal("u", "t", frozenset({"b:write", "a:read"}), 1_800_000_000)
    assert principal.to_context() == {
        "userId": "u",
        "tenantId": "t",
        "permissions": "a:read b:write",
        "expiresAt": 1_800_000_000,
    }


def test_from_context_ignores_extra_gateway_fields() -> None:
    context = {
        "userId": "u",
        "tenantId": "t",
        "principalId": "u",
        "integrationLatency": 12,
        "expiresAt": 1.8e9,
    }
    assert Principal.from_context(context) == Principal("u", "t", frozenset(), 1_800_000_000)


@pytest.mark.parametrize(
    "context",
    [
        {},
        {"tenantId": "t"},
        {"userId": "u"},
        {"userId": "", "tenantId": "t"},
        {"userId": "u", "tenantId": 5},
        {"userId": "u", "tenantId": "t", "expiresAt": "soon"},
        {"userId": "u", "tenantId": "t", "expiresAt": True},
        {"userId": "u", "tenantId": "t", "expiresAt": "inf"},
        {"userId": "u", "tenantId": "t", "permissions": 3},
    ],
)
def test_from_context_refuses_incomplete_context(context: dict[str, Any]) -> None:
    with pytest.raises(AuthError) as info:
        Principal.from_context(context)
    assert info.value.reason is AuthReason.MALFORMED


def test_has_permissions_is_all_of() -> None:
    principal = Principal("u", "t", frozenset({"a", "b"}))
    assert principal.has_permissions([])
    assert principal.has_permissions({"a"})
    assert principal.has_permissions(["a", "b"])
    assert not principal.has_permissions(["a", "c"])
    assert principal.has_permissions("a")
    assert not principal.has_permissions("ab")


def test_permissions_are_normalised_and_validated() -> None:
    principal = Principal("u", "t", {"a", "b"})  # type: ignore[arg-type]
    assert principal.permissions == frozenset({"a", "b"})
    assert hash(principal) == hash(Principal("u", "t", frozenset({"a", "b"})))
    for bad in ({"a b"}, {""}, {" a"}):
        with pytest.raises(ValueError, match="whitespace"):
            Principal("u", "t", frozenset(bad))


@pytest.mark.parametrize("reason", list(AuthReason))
def test_status_code_per_reason(reason: AuthReason) -> None:
    expected = 403 if reason is AuthReason.TENANT_NOT_ALLOWED else 401
    assert AuthError(reason).status_code == expected


def test_reason_values_are_the_documented_codes() -> None:
    assert {reason.value for reason in AuthReason} == {
        "expired",
        "not_yet_valid",
        "bad_signature",
        "bad_algorithm",
        "wrong_issuer",
        "wrong_audience",
        "missing_claim",
        "tenant_not_allowed",
        "unknown_key",
        "malformed",
    }


def test_auth_error_text_and_pickling() -> None:
    error = AuthError(AuthReason.EXPIRED)
    assert error.message == "token has expired"
    assert str(error) == "expired: token has expired"
    assert repr(error) == "AuthError(reason='expired', message='token has expired')"
    custom = AuthError(AuthReason.MISSING_CLAIM, "token lacks the sub claim")
    copy = pickle.loads(pickle.dumps(custom))
    assert (copy.reason, copy.message) == (custom.reason, custom.message)
