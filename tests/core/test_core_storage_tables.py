"""Table specs are the single source of every key schema: they must build valid tables."""

from __future__ import annotations

from collections import Counter
from typing import Any

import boto3
import pytest
from moto import mock_aws
from streamer_core.storage import (
    CONNECTIONS,
    REQUESTS,
    SUBSCRIPTIONS,
    TABLES,
    IndexSpec,
    KeyAttribute,
    TableSpec,
    create_tables,
)


@pytest.mark.parametrize("spec", TABLES, ids=lambda spec: spec.logical_name)
def test_attribute_definitions_are_unique_and_cover_every_key(spec: TableSpec) -> None:
    definitions = spec.attribute_definitions()
    names = [attribute.name for attribute in definitions]
    assert len(names) == len(set(names))
    keys = {spec.partition_key.name} | ({spec.sort_key.name} if spec.sort_key else set())
    for index in spec.indexes:
        keys |= {attribute.name for attribute in index.key_attributes()}
    assert set(names) == keys


@pytest.mark.parametrize("spec", TABLES, ids=lambda spec: spec.logical_name)
def test_create_table_kwargs_build_the_declared_table(spec: TableSpec) -> None:
    kwargs = spec.create_table_kwargs("dev")
    assert kwargs["TableName"] == f"streamer-dev-{spec.logical_name}"
    assert kwargs["BillingMode"] == "PAY_PER_REQUEST"
    assert "ProvisionedThroughput" not in kwargs
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(**kwargs)
        table = client.describe_table(TableName=kwargs["TableName"])["Table"]
    schema = {key["KeyType"]: key["AttributeName"] for key in table["KeySchema"]}
    assert schema["HASH"] == spec.partition_key.name
    assert schema.get("RANGE") == (spec.sort_key.name if spec.sort_key else None)
    indexes = {index["IndexName"]: index for index in table.get("GlobalSecondaryIndexes", [])}
    assert set(indexes) == {index.name for index in spec.indexes}
    for index in spec.indexes:
        described = {
            key["KeyType"]: key["AttributeName"] for key in indexes[index.name]["KeySchema"]
        }
        assert described["HASH"] == index.partition_key.name
        assert described.get("RANGE") == (index.sort_key.name if index.sort_key else None)
        assert indexes[index.name]["Projection"]["ProjectionType"] == index.projection


def test_specs_match_the_contract() -> None:
    assert [spec.logical_name for spec in TABLES] == ["connections", "subscriptions", "requests"]
    assert CONNECTIONS.key_names() == ("connection_id",)
    assert {index.name: index.partition_key.name for index in CONNECTIONS.indexes} == {
        "by_tenant": "tenant_id",
        "by_user": "tenant_user",
    }
    assert SUBSCRIPTIONS.key_names() == ("connection_id", "topic")
    assert SUBSCRIPTIONS.index("by_topic").partition_key.name == "tenant_topic"
    assert REQUESTS.key_names() == ("owner", "request_id")
    assert all(spec.ttl_attribute == "expires_at" for spec in TABLES)
    assert SUBSCRIPTIONS.physical_name("prod") == "streamer-prod-subscriptions"


def test_a_spec_declaring_one_attribute_with_two_types_is_refused() -> None:
    with pytest.raises(ValueError, match="both S and N"):
        TableSpec(
            "broken",
            KeyAttribute("id"),
            indexes=(IndexSpec("by_id", KeyAttribute("id", "N")),),
        )


def test_a_spec_with_duplicate_index_names_is_refused() -> None:
    index = IndexSpec("same", KeyAttribute("a"))
    with pytest.raises(ValueError, match="duplicate index"):
        TableSpec("broken", KeyAttribute("id"), indexes=(index, index))


def test_unknown_index_lookup_fails_loudly() -> None:
    with pytest.raises(KeyError):
        REQUESTS.index("by_topic")


def _ttl(client: Any, name: str) -> dict[str, Any]:
    description: dict[str, Any] = client.describe_time_to_live(TableName=name)[
        "TimeToLiveDescription"
    ]
    return description


def test_create_tables_is_idempotent_and_enables_ttl() -> None:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        first = create_tables(client, "staging")
        second = create_tables(client, "staging")
        assert (
            first
            == second
            == {
                "connections": "streamer-staging-connections",
                "subscriptions": "streamer-staging-subscriptions",
                "requests": "streamer-staging-requests",
            }
        )
        assert sorted(client.list_tables()["TableNames"]) == sorted(first.values())
        for name in first.values():
            ttl = _ttl(client, name)
            assert ttl["TimeToLiveStatus"] == "ENABLED"
            assert ttl["AttributeName"] == "expires_at"


def test_create_tables_keeps_environments_apart() -> None:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(client, "dev")
        create_tables(client, "production")
        names = client.list_tables()["TableNames"]
    counts = Counter(name.split("-")[1] for name in names)
    assert counts == {"dev": 3, "production": 3}
