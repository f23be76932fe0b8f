"""The emulator's fast path through moto's serializer changes speed, never a response."""

from __future__ import annotations

import string
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from streamer_infra.local.moto_speedups import install_moto_speedups, plain_projection, wire_form

TABLE = "speedups"

_text = st.text(alphabet=string.ascii_letters + string.digits + "é #/$", max_size=12)
_number = st.integers(-(10**12), 10**12).map(str)
_scalar = st.one_of(
    _text.map(lambda v: {"S": v}),
    _number.map(lambda v: {"N": v}),
    st.booleans().map(lambda v: {"BOOL": v}),
    st.just({"NULL": True}),
    st.binary(max_size=8).map(lambda v: {"B": v}),
    st.sets(_text, min_size=1, max_size=3).map(lambda v: {"SS": sorted(v)}),
    st.sets(_number, min_size=1, max_size=3).map(lambda v: {"NS": sorted(v)}),
    st.sets(st.binary(min_size=1, max_size=4), min_size=1, max_size=3).map(
        lambda v: {"BS": sorted(v)}
    ),
)
_value = st.recursive(
    _scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda v: {"L": v}),
        st.dictionaries(_text.filter(bool), inner, max_size=3).map(lambda v: {"M": v}),
    ),
    max_leaves=8,
)
_item = st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e"]), _value, min_size=1, max_size=5)


@pytest.fixture(scope="module")
def dynamodb() -> Iterator[Any]:
    assert install_moto_speedups()
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName=TABLE,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        )
        yield client


def _sets_sorted(value: Any) -> Any:
    """DynamoDB does not keep the order of set members."""
    if isinstance(value, dict):
        return {
            key: sorted(inner) if key in ("SS", "NS", "BS") else _sets_sorted(inner)
            for key, inner in value.items()
        }
    if isinstance(value, list):
        return [_sets_sorted(item) for item in value]
    return value


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(item=_item)
def test_what_is_written_is_what_get_query_and_scan_read(
    dynamodb: Any, item: dict[str, Any]
) -> None:
    written = {"pk": {"S": "key"}, **item}
    dynamodb.put_item(TableName=TABLE, Item=written)
    got = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": "key"}}, ConsistentRead=True)
    queried = dynamodb.query(
        TableName=TABLE,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "key"}},
    )
    expected = _sets_sorted(written)
    assert _sets_sorted(got["Item"]) == expected
    assert [_sets_sorted(found) for found in queried["Items"]] == [expected]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(item=_item, names=st.lists(st.sampled_from(["a", "b", "c", "d", "e", "pk"]), min_size=1))
def test_a_projection_reads_back_exactly_the_named_attributes(
    dynamodb: Any, item: dict[str, Any], names: list[str]
) -> None:
    written = {"pk": {"S": "key"}, **item}
    dynamodb.put_item(TableName=TABLE, Item=written)
    placeholders = {f"#n{index}": name for index, name in enumerate(names)}
    queried = dynamodb.query(
        TableName=TABLE,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "key"}},
        ProjectionExpression=", ".join(placeholders),
        ExpressionAttributeNames=placeholders,
    )
    expected = {name: value for name, value in written.items() if name in names}
    assert [_sets_sorted(found) for found in queried["Items"]] == [_sets_sorted(expected)]


class _Attr:
    def __init__(self, wire: dict[str, Any]) -> None:
        ((self.type, self.value),) = wire.items()


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        ([["a"], ["b"]], {"a": {"S": "x"}, "b": {"N": "-12"}}),
        ([["a"], ["a"], ["missing"]], {"a": {"S": "x"}}),
        ([["b"], ["t"], ["z"]], {"b": {"N": "-12"}, "t": {"BOOL": True}, "z": {"NULL": True}}),
        ([["a", "b"]], None),  # nested path
        ([["a[0]"]], None),  # list element
        ([["lead"]], None),  # "007" comes back from moto's path as "7"
        ([["m"]], None),  # a map takes moto's path
    ],
)
def test_only_plain_top_level_projections_take_the_fast_path(
    paths: list[list[str]], expected: Any
) -> None:
    attributes = {
        "a": _Attr({"S": "x"}),
        "b": _Attr({"N": "-12"}),
        "t": _Attr({"BOOL": True}),
        "z": _Attr({"NULL": True}),
        "lead": _Attr({"N": "007"}),
        "m": _Attr({"M": {"k": {"S": "v"}}}),
    }
    assert plain_projection(attributes, paths) == expected


@pytest.mark.parametrize(
    ("value", "fast"),
    [
        ({"S": "x"}, True),
        ({"N": "1"}, True),
        ({"BOOL": False}, True),
        ({"M": {"k": {"L": [{"S": "x"}, {"NULL": True}]}}}, True),
        ({"SS": ["a", "b"]}, True),
        ({"B": "eHk="}, False),
        ({"M": {"k": {"BS": [b"x"]}}}, False),
        ({"BOOL": "true"}, False),
        ({"N": 1}, False),
        ({"S": "x", "N": "1"}, False),
        ("x", False),
    ],
)
def test_only_values_the_model_walk_would_copy_unchanged_take_the_fast_path(
    value: Any, fast: bool
) -> None:
    assert wire_form(value) is fast


def test_installing_twice_patches_once() -> None:
    from moto.core.serialize import BaseJSONSerializer

    install_moto_speedups()
    patched = BaseJSONSerializer._serialize_type_structure
    assert install_moto_speedups()
    assert BaseJSONSerializer._serialize_type_structure is patched


def test_a_copied_item_shares_nothing_mutable_with_the_stored_one() -> None:
    import copy

    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    assert install_moto_speedups()
    stored = Item(
        hash_key=DynamoType({"S": "key"}),
        range_key=None,
        attrs={"s": {"S": "x"}, "n": {"N": "1"}, "m": {"M": {"k": {"L": [{"S": "v"}]}}}},
    )
    copied = copy.deepcopy(stored)
    assert copied == stored
    assert copied.attrs is not stored.attrs
    assert all(copied.attrs[name] is not stored.attrs[name] for name in stored.attrs)
    copied.attrs["m"].value["k"].value.append(DynamoType({"S": "w"}))
    copied.attrs["s"].value = "changed"
    assert stored.to_json()["Attributes"] == {
        "s": {"S": "x"},
        "n": {"N": "1"},
        "m": {"M": {"k": {"L": [{"S": "v"}]}}},
    }


@settings(max_examples=200, deadline=None)
@given(item=_item)
def test_an_item_is_sized_as_moto_sizes_it(item: dict[str, Any]) -> None:
    from moto.dynamodb.models.dynamo_type import DynamoType, Item
    from moto.dynamodb.models.utilities import bytesize

    assert install_moto_speedups()
    stored = Item(hash_key=DynamoType({"S": "key"}), range_key=None, attrs=item)
    expected = sum(bytesize(key) + DynamoType.size(value) for key, value in stored.attrs.items())
    assert stored.size() == expected


def _dynamodb_order(value: dict[str, Any]) -> tuple[str, Any]:
    """How DynamoDB compares a key value: strings and binaries as given, numbers as numbers."""
    ((kind, inner),) = value.items()
    return kind, Decimal(inner) if kind == "N" else inner


_key = st.one_of(
    _text.map(lambda v: {"S": v}),
    _number.map(lambda v: {"N": v}),
    st.binary(max_size=8).map(lambda v: {"B": v}),
    st.booleans().map(lambda v: {"BOOL": v}),
)


@settings(max_examples=300, deadline=None)
@given(a=_key, b=_key)
def test_values_compare_as_dynamodb_compares_them(a: dict[str, Any], b: dict[str, Any]) -> None:
    # A query matches every item's key against the condition's and sorts the matches by
    # these comparisons; the fast cast must keep both.
    from moto.dynamodb.models.dynamo_type import DynamoType

    assert install_moto_speedups()
    left, right = DynamoType(a), DynamoType(b)
    (kind_a, order_a), (kind_b, order_b) = _dynamodb_order(a), _dynamodb_order(b)
    assert (left == right) == (kind_a == kind_b and order_a == order_b)
    assert (left != right) == (kind_a != kind_b or order_a != order_b)
    if kind_a == kind_b:
        assert (left < right) == (order_a < order_b)
        assert (left > right) == (order_a > order_b)
    if left == right:
        assert hash(left) == hash(right)
