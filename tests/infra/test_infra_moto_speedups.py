"""The emulator's fast paths through moto change speed, never a response.

The main check runs one script of DynamoDB calls against moto in-process twice, as moto ships
and with the emulator's patches taking their fast paths, and compares every response in full:
status, parsed fields and the bytes of the body. Both runs count how often the fast paths
answered, so the comparison cannot pass by never taking them.
"""

from __future__ import annotations

import contextlib
import json
import string
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from streamer_infra.local import _atomic_dynamodb as atomic_dynamodb
from streamer_infra.local import _moto_speedups as moto_speedups
from streamer_infra.local._atomic_dynamodb import ATOMIC_DYNAMODB
from streamer_infra.local._emulator import stop_shared_emulator
from streamer_infra.local._moto_patches import serving
from streamer_infra.local._moto_speedups import (
    MOTO_SPEEDUPS,
    install_moto_speedups,
    plain_projection,
    uninstall_moto_speedups,
    wire_form,
)

TABLE = "speedups"
SCRIPT_TABLE = "script"

_text = st.text(alphabet=string.ascii_letters + string.digits + "é #/$", max_size=12)
_number = st.integers(-(10**12), 10**12).map(str)
_decimal = st.decimals(-(10**6), 10**6, places=3, allow_nan=False, allow_infinity=False).map(str)
_odd_number = st.one_of(
    _decimal,
    st.sampled_from(["007", "-0", "0.10", "1E+2", "-1.5e-3", "+5", "1.0", "9" * 38]),
)
"""Numbers as a client may write them, which moto's own paths do not all return as written."""


def _values(number: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Attribute values of every type, nested up to a few levels."""
    scalar = st.one_of(
        _text.map(lambda v: {"S": v}),
        number.map(lambda v: {"N": v}),
        st.booleans().map(lambda v: {"BOOL": v}),
        st.just({"NULL": True}),
        st.binary(max_size=8).map(lambda v: {"B": v}),
        st.sets(_text, min_size=1, max_size=3).map(lambda v: {"SS": sorted(v)}),
        st.sets(number, min_size=1, max_size=3).map(lambda v: {"NS": sorted(v)}),
        st.sets(st.binary(min_size=1, max_size=4), min_size=1, max_size=3).map(
            lambda v: {"BS": sorted(v)}
        ),
    )
    return st.recursive(
        scalar,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3).map(lambda v: {"L": v}),
            st.dictionaries(_text.filter(bool), inner, max_size=3).map(lambda v: {"M": v}),
        ),
        max_leaves=8,
    )


_value = _values(_number)
_any_value = _values(st.one_of(_number, _odd_number))
_names = st.sampled_from(["a", "b", "c", "d", "e"])
_item = st.dictionaries(_names, _value, min_size=1, max_size=5)
_any_item = st.dictionaries(
    _names, st.one_of(_odd_number.map(lambda v: {"N": v}), _any_value), min_size=1, max_size=5
)


@contextlib.contextmanager
def _fast_paths() -> Iterator[None]:
    """moto as the emulator's request threads run it."""
    with MOTO_SPEEDUPS.applied() as complete, ATOMIC_DYNAMODB.applied(), serving():
        assert complete
        yield


@pytest.fixture(scope="module")
def dynamodb() -> Iterator[Any]:
    # moto as shipped means no emulator in the process: an earlier module may have left the
    # shared one running.
    stop_shared_emulator()
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName=TABLE,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        )
        yield client


# -- the same calls, the same responses ---------------------------------------------------


class _Recorder:
    """Every response the client receives: operation, status, body bytes, parsed fields."""

    def __init__(self) -> None:
        self.responses: list[tuple[str, int, bytes, dict[str, Any]]] | None = None

    def __call__(self, http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        if self.responses is not None:
            fields = {key: value for key, value in parsed.items() if key != "ResponseMetadata"}
            self.responses.append(
                (model.name, http_response.status_code, http_response.content, fields)
            )


@pytest.fixture(scope="module")
def recorder(dynamodb: Any) -> _Recorder:
    recorder = _Recorder()
    dynamodb.meta.events.register("after-call.dynamodb", recorder, unique_id="speedups-recorder")
    return recorder


class _FastPathHits:
    """How often each fast path answered instead of handing over to moto."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.counts = {"wire_form": 0, "plain_projection": 0, "scalar_size": 0, "lock": 0}
        for name in ("wire_form", "plain_projection", "scalar_size"):
            self._count(monkeypatch, moto_speedups, name, name)
        self._count(monkeypatch, atomic_dynamodb, "_backend_lock", "lock")

    def _count(self, monkeypatch: pytest.MonkeyPatch, module: Any, name: str, key: str) -> None:
        real = getattr(module, name)

        def counted(*args: Any) -> Any:
            answer = real(*args)
            if answer is not None and answer is not False:
                self.counts[key] += 1
            return answer

        monkeypatch.setattr(module, name, counted)

    def take(self) -> dict[str, int]:
        counts = dict(self.counts)
        self.counts = dict.fromkeys(self.counts, 0)
        return counts


def _call(client: Any, operation: str, **params: Any) -> None:
    with contextlib.suppress(ClientError):  # the recorder has the error response
        getattr(client, operation)(**params)


def _create_script_table(client: Any) -> None:
    client.create_table(
        TableName=SCRIPT_TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "kind", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by_kind",
                "KeySchema": [
                    {"AttributeName": "kind", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["a", "b"]},
            }
        ],
    )


def _script(client: Any, items: list[dict[str, Any]], value: dict[str, Any]) -> None:
    """One of every read and write the handlers and the stores make, and some they do not."""
    table = {"TableName": SCRIPT_TABLE}
    keys = [{"pk": {"S": "p"}, "sk": {"S": f"s{index}"}} for index in range(len(items))]
    p = {":p": {"S": "p"}}
    # A map and a list in every item, for nested projections (moto fails on a path through
    # a scalar, where DynamoDB returns nothing).
    nested = [
        {
            "m": {"M": {"x": item.get("a", {"NULL": True}), "y": {"S": "y"}}},
            "l": {"L": [item.get("b", {"S": "b"}), value]},
        }
        for item in items
    ]
    for key, item, more in zip(keys, items, nested, strict=True):
        _call(client, "put_item", **table, Item={**key, "kind": {"S": "k"}, **item, **more})
    _call(client, "put_item", **table, Item={**keys[0], **items[0]}, ReturnValues="ALL_OLD")
    _call(client, "put_item", **table, Item={**keys[0], "kind": {"S": "k"}, **items[0]})
    _call(
        client,
        "update_item",
        **table,
        Key=keys[0],
        UpdateExpression="SET #a = :v, n = if_not_exists(n, :zero) + :one",
        ExpressionAttributeNames={"#a": "a"},
        ExpressionAttributeValues={":v": value, ":zero": {"N": "0"}, ":one": {"N": "1.5"}},
        ReturnValues="ALL_NEW",
    )
    _call(
        client,
        "update_item",
        **table,
        Key=keys[-1],
        UpdateExpression="SET e = :v REMOVE #b",
        ExpressionAttributeNames={"#b": "b"},
        ExpressionAttributeValues={":v": value},
        ReturnValues="UPDATED_OLD",
    )
    for key in keys:
        _call(client, "get_item", **table, Key=key, ConsistentRead=True)
        _call(client, "get_item", **table, Key=key, ProjectionExpression="pk, sk, kind")
        _call(
            client,
            "get_item",
            **table,
            Key=key,
            ProjectionExpression="#a, #b, #c, #d, #e, pk, n",
            ExpressionAttributeNames={"#a": "a", "#b": "b", "#c": "c", "#d": "d", "#e": "e"},
        )
        _call(
            client,
            "get_item",
            **table,
            Key=key,
            ProjectionExpression="m.x, l[0], l[1], #a",
            ExpressionAttributeNames={"#a": "a"},
        )
    _call(client, "query", **table, KeyConditionExpression="pk = :p", ExpressionAttributeValues=p)
    _call(
        client,
        "query",
        **table,
        KeyConditionExpression="pk = :p AND sk > :s",
        ExpressionAttributeValues={**p, ":s": {"S": "s0"}},
        ScanIndexForward=False,
        Limit=2,
    )
    _call(
        client,
        "query",
        **table,
        KeyConditionExpression="pk = :p",
        FilterExpression="attribute_exists(#a)",
        ExpressionAttributeNames={"#a": "a"},
        ExpressionAttributeValues=p,
        Select="COUNT",
    )
    _call(
        client,
        "query",
        **table,
        IndexName="by_kind",
        KeyConditionExpression="kind = :k",
        ExpressionAttributeValues={":k": {"S": "k"}},
    )
    _call(
        client,
        "query",
        **table,
        IndexName="by_kind",
        KeyConditionExpression="kind = :k",
        ProjectionExpression="pk, #b, sk",
        ExpressionAttributeNames={"#b": "b"},
        ExpressionAttributeValues={":k": {"S": "k"}},
    )
    _call(client, "scan", **table)
    _call(
        client,
        "scan",
        **table,
        ProjectionExpression="pk, #m",
        ExpressionAttributeNames={"#m": "m"},
    )
    _call(client, "scan", **table, IndexName="by_kind", Limit=1)
    _call(
        client,
        "batch_get_item",
        RequestItems={SCRIPT_TABLE: {"Keys": keys, "ConsistentRead": True}},
    )
    _call(
        client,
        "batch_get_item",
        RequestItems={SCRIPT_TABLE: {"Keys": keys, "ProjectionExpression": "sk, kind, n"}},
    )
    _call(
        client,
        "transact_write_items",
        TransactItems=[
            {"Put": {**table, "Item": {"pk": {"S": "q"}, "sk": {"S": "t"}, "v": value}}},
            {
                "Update": {
                    **table,
                    "Key": keys[-1],
                    "UpdateExpression": "SET #b = :v",
                    "ExpressionAttributeNames": {"#b": "b"},
                    "ExpressionAttributeValues": {":v": value},
                }
            },
            {
                "ConditionCheck": {
                    **table,
                    "Key": keys[0],
                    "ConditionExpression": "attribute_exists(pk)",
                }
            },
        ],
    )
    _call(
        client,
        "transact_get_items",
        TransactItems=[
            {"Get": {**table, "Key": key}} for key in [*keys, {"pk": {"S": "q"}, "sk": {"S": "t"}}]
        ],
    )
    _call(
        client,
        "put_item",
        **table,
        Item={**keys[0], "a": {"S": "lost"}},
        ConditionExpression="attribute_not_exists(pk)",
        ReturnValuesOnConditionCheckFailure="ALL_OLD",
    )
    _call(
        client,
        "update_item",
        **table,
        Key=keys[0],
        UpdateExpression="SET a = :v",
        ConditionExpression="n > :big",
        ExpressionAttributeValues={":v": value, ":big": {"N": "100"}},
        ReturnValuesOnConditionCheckFailure="ALL_OLD",
    )
    _call(
        client,
        "transact_write_items",
        TransactItems=[
            {"Put": {**table, "Item": {"pk": {"S": "r"}, "sk": {"S": "t"}}}},
            {
                "ConditionCheck": {
                    **table,
                    "Key": keys[0],
                    "ConditionExpression": "attribute_not_exists(pk)",
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
        ],
    )
    for key in keys:
        _call(client, "delete_item", **table, Key=key, ReturnValues="ALL_OLD")
    _call(client, "scan", **table)


def _run(
    client: Any, recorder: _Recorder, items: list[dict[str, Any]], value: dict[str, Any]
) -> list[tuple[str, int, bytes, dict[str, Any]]]:
    """The responses to the script, on a table created for it and deleted after (their
    answers carry timestamps, so they are left out)."""
    _create_script_table(client)
    recorder.responses = responses = []
    try:
        _script(client, items, value)
    finally:
        recorder.responses = None
        client.delete_table(TableName=SCRIPT_TABLE)
    return responses


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(items=st.lists(_any_item, min_size=2, max_size=4), value=_any_value)
def test_moto_answers_the_same_calls_with_the_same_responses_with_and_without_the_fast_paths(
    dynamodb: Any, recorder: _Recorder, items: list[dict[str, Any]], value: dict[str, Any]
) -> None:
    assert not MOTO_SPEEDUPS.installed
    assert not ATOMIC_DYNAMODB.installed
    with pytest.MonkeyPatch.context() as monkeypatch:
        hits = _FastPathHits(monkeypatch)
        as_shipped = _run(dynamodb, recorder, items, value)
        assert hits.take() == {"wire_form": 0, "plain_projection": 0, "scalar_size": 0, "lock": 0}
        with _fast_paths():
            fast = _run(dynamodb, recorder, items, value)
        taken = hits.take()
    assert all(count > 0 for count in taken.values()), taken

    def readable(responses: list[tuple[str, int, bytes, dict[str, Any]]]) -> list[Any]:
        return [(name, status, fields) for name, status, _, fields in responses]

    assert readable(fast) == readable(as_shipped)
    assert [body for _, _, body, _ in fast] == [body for _, _, body, _ in as_shipped]
    # Every call answered with a body, and the failures failed as they should.
    assert all(json.loads(body) is not None for _, _, body, _ in fast)
    statuses = [status for _, status, _, _ in fast]
    assert statuses.count(400) >= 3


# -- the values written are the values read ---------------------------------------------------


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
    with _fast_paths():
        dynamodb.put_item(TableName=TABLE, Item=written)
        got = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": "key"}}, ConsistentRead=True)
        queried = dynamodb.query(
            TableName=TABLE,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": "key"}},
        )
        scanned = dynamodb.scan(TableName=TABLE)
    expected = _sets_sorted(written)
    assert _sets_sorted(got["Item"]) == expected
    assert [_sets_sorted(found) for found in queried["Items"]] == [expected]
    assert [_sets_sorted(found) for found in scanned["Items"]] == [expected]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(item=_item, names=st.lists(st.sampled_from(["a", "b", "c", "d", "e", "pk"]), min_size=1))
def test_a_projection_reads_back_exactly_the_named_attributes(
    dynamodb: Any, item: dict[str, Any], names: list[str]
) -> None:
    written = {"pk": {"S": "key"}, **item}
    placeholders = {f"#n{index}": name for index, name in enumerate(names)}
    with _fast_paths():
        dynamodb.put_item(TableName=TABLE, Item=written)
        queried = dynamodb.query(
            TableName=TABLE,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": "key"}},
            ProjectionExpression=", ".join(placeholders),
            ExpressionAttributeNames=placeholders,
        )
    expected = {name: value for name, value in written.items() if name in names}
    assert [_sets_sorted(found) for found in queried["Items"]] == [_sets_sorted(expected)]


# -- which values take the fast paths --------------------------------------------------------


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


def test_installing_twice_patches_once_and_the_last_uninstall_restores_moto() -> None:
    from moto.core.serialize import BaseJSONSerializer

    moto_s_own = BaseJSONSerializer.__dict__["_serialize_type_structure"]
    already = MOTO_SPEEDUPS.installed
    assert install_moto_speedups()
    patched = BaseJSONSerializer.__dict__["_serialize_type_structure"]
    assert (patched is moto_s_own) == already
    assert install_moto_speedups()
    assert BaseJSONSerializer.__dict__["_serialize_type_structure"] is patched
    uninstall_moto_speedups()
    uninstall_moto_speedups()
    assert BaseJSONSerializer.__dict__["_serialize_type_structure"] is moto_s_own
    assert MOTO_SPEEDUPS.installed == already


def test_copying_an_item_is_moto_s_own() -> None:
    # moto 5.2 copies items without pickling them or checking their size again: nothing to
    # add, so nothing is patched.
    from moto.dynamodb.models.dynamo_type import Item

    moto_s_own = Item.__dict__["__deepcopy__"]
    with _fast_paths():
        assert Item.__dict__["__deepcopy__"] is moto_s_own


@settings(max_examples=200, deadline=None)
@given(item=_item)
def test_an_item_is_sized_as_moto_sizes_it(item: dict[str, Any]) -> None:
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    stored = Item(hash_key=DynamoType({"S": "key"}), range_key=None, attrs=item)
    expected = stored.size()
    with _fast_paths():
        assert stored.size() == expected


def _dynamodb_order(value: dict[str, Any]) -> tuple[str, Any]:
    """How DynamoDB compares a key value: strings and binaries as given, numbers as numbers."""
    ((kind, inner),) = value.items()
    return kind, Decimal(inner) if kind == "N" else inner


_key = st.one_of(
    _text.map(lambda v: {"S": v}),
    _number.map(lambda v: {"N": v}),
    _decimal.map(lambda v: {"N": v}),
    st.binary(max_size=8).map(lambda v: {"B": v}),
    st.booleans().map(lambda v: {"BOOL": v}),
)


@settings(max_examples=300, deadline=None)
@given(a=_key, b=_key)
def test_values_compare_as_dynamodb_compares_them(a: dict[str, Any], b: dict[str, Any]) -> None:
    # A query matches every item's key against the condition's and sorts the matches by
    # these comparisons; the fast cast must keep both.
    from moto.dynamodb.models.dynamo_type import DynamoType

    left, right = DynamoType(a), DynamoType(b)
    (kind_a, order_a), (kind_b, order_b) = _dynamodb_order(a), _dynamodb_order(b)
    moto_s_casts = (left.cast_value, right.cast_value)
    with _fast_paths():
        assert (left.cast_value, right.cast_value) == moto_s_casts
        assert (left == right) == (kind_a == kind_b and order_a == order_b)
        assert (left != right) == (kind_a != kind_b or order_a != order_b)
        if kind_a == kind_b:
            assert (left < right) == (order_a < order_b)
            assert (left > right) == (order_a > order_b)
        if left == right:
            assert hash(left) == hash(right)
