"""Item encoding: client JSON must come back exactly as it went in."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from streamer_core.protocol import MAX_FRAME_BYTES
from streamer_core.storage import InvalidTokenError, ItemTooLargeError
from streamer_core.storage.codec import (
    attribute_value,
    compose_key,
    content_hash,
    deserialize_item,
    dump_json,
    load_json,
    serialize_item,
)
from streamer_core.storage.pagination import decode_token, encode_token

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=30,
)
# What DynamoDB's own number type holds (38 significant digits, exponent within ±125), with
# floats kept below 2**53 where an integral float and the int read back are the same number.
_native_floats = st.floats(min_value=-(2.0**53), max_value=2.0**53).filter(
    lambda x: x == 0 or abs(x) > 1e-100
)
_native_numbers = st.integers(min_value=-(10**37), max_value=10**37) | _native_floats
native_values = st.recursive(
    st.none() | st.booleans() | _native_numbers | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


def _same(a: Any, b: Any) -> bool:
    """Equal, and of the same JSON kind all the way down (1 and 1.0 differ in JSON)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@given(json_values)
def test_any_json_value_round_trips_through_an_item(value: Any) -> None:
    item = serialize_item({"result": dump_json(value, field="result")})
    assert item["result"].keys() == {"S"}
    assert _same(load_json(deserialize_item(item)["result"]), value)


@given(native_values)
def test_native_attributes_round_trip_with_floats_through_decimal(value: Any) -> None:
    item = serialize_item({"value": value})
    back = deserialize_item(item)
    if value is None:
        assert back == {}
    else:
        assert back["value"] == value


@given(_native_floats)
def test_floats_are_stored_as_their_shortest_decimal(value: float) -> None:
    encoded = attribute_value(value)
    assert Decimal(encoded["N"]) == Decimal(repr(value))
    back = deserialize_item({"v": encoded})["v"]
    assert float(back) == value


def test_none_means_absent_and_non_finite_floats_are_refused() -> None:
    assert serialize_item({"a": None, "b": 1}) == {"b": {"N": "1"}}
    with pytest.raises(ValueError, match="cannot store"):
        attribute_value(float("nan"))
    with pytest.raises(ValueError, match="JSON compliant"):
        dump_json({"x": float("inf")}, field="result")


def test_json_larger_than_a_frame_is_refused_before_writing() -> None:
    dump_json("x" * (MAX_FRAME_BYTES - 2), field="result")
    with pytest.raises(ItemTooLargeError) as caught:
        dump_json("é" * (MAX_FRAME_BYTES // 2), field="result")
    assert caught.value.field == "result"
    assert caught.value.size > caught.value.limit == MAX_FRAME_BYTES


@given(st.dictionaries(st.text(), json_values, max_size=6))
def test_content_hash_ignores_key_order(payload: dict[str, Any]) -> None:
    reordered = dict(reversed(list(payload.items())))
    assert content_hash(reordered) == content_hash(payload)


def test_content_hash_tells_different_payloads_apart() -> None:
    assert content_hash({"n": 1}) != content_hash({"n": 2})
    assert content_hash({"n": 1}) != content_hash({"n": "1"})


@pytest.mark.parametrize("tenant", ["", "a#b"])
def test_tenant_ids_that_could_collide_in_a_composite_key_are_refused(tenant: str) -> None:
    with pytest.raises(ValueError, match="tenant_id"):
        compose_key(tenant, "topic")


def test_composite_keys_join_with_the_separator() -> None:
    assert compose_key("acme", "reports/daily") == "acme#reports/daily"


_KEY = {"connection_id": {"S": "c1"}, "tenant_id": {"S": "acme"}}


def test_page_tokens_round_trip_and_are_url_safe() -> None:
    token = encode_token(_KEY)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    decoded = decode_token(
        token, key_names=("connection_id", "tenant_id"), partition=("tenant_id", "acme")
    )
    assert decoded == _KEY


@pytest.mark.parametrize(
    "token",
    [
        "not base64 !",
        "bm90IGpzb24",  # "not json"
        encode_token({"connection_id": {"S": "c1"}}),
        encode_token({"connection_id": {"S": "c1"}, "tenant_id": {"S": "other"}}),
        encode_token({"connection_id": {"X": "c1"}, "tenant_id": {"S": "acme"}}),
        encode_token({"connection_id": {"S": 1}, "tenant_id": {"S": "acme"}}),
        encode_token({"connection_id": "c1", "tenant_id": {"S": "acme"}}),
    ],
)
def test_foreign_or_tampered_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidTokenError):
        decode_token(
            token, key_names=("connection_id", "tenant_id"), partition=("tenant_id", "acme")
        )
