"""The one declaration of Streamer's DynamoDB tables.

The Pulumi program, the local stack and the stores all derive names, keys, indexes and TTL
from these specs, so a key schema can never drift between the places that create a table and
the code that queries it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import ClientError

from streamer_core.storage.conditions import error_code


@dataclass(frozen=True)
class KeyAttribute:
    name: str
    type: Literal["S", "N", "B"] = "S"

    def key_schema(self, key_type: Literal["HASH", "RANGE"]) -> dict[str, str]:
        return {"AttributeName": self.name, "KeyType": key_type}


@dataclass(frozen=True)
class IndexSpec:
    name: str
    partition_key: KeyAttribute
    sort_key: KeyAttribute | None = None
    projection: Literal["ALL", "KEYS_ONLY"] = "ALL"

    def key_attributes(self) -> tuple[KeyAttribute, ...]:
        return (
            (self.partition_key,) if self.sort_key is None else (self.partition_key, self.sort_key)
        )


def _key_schema(partition: KeyAttribute, sort: KeyAttribute | None) -> list[dict[str, str]]:
    schema = [partition.key_schema("HASH")]
    if sort is not None:
        schema.append(sort.key_schema("RANGE"))
    return schema


@dataclass(frozen=True)
class TableSpec:
    logical_name: str
    partition_key: KeyAttribute
    sort_key: KeyAttribute | None = None
    indexes: tuple[IndexSpec, ...] = ()
    ttl_attribute: str | None = "expires_at"

    def __post_init__(self) -> None:
        # DynamoDB rejects one attribute declared with two types, but only at deploy time;
        # failing at import makes a bad spec impossible to ship.
        seen: dict[str, str] = {}
        for attribute in self._all_keys():
            if seen.setdefault(attribute.name, attribute.type) != attribute.type:
                raise ValueError(
                    f"{self.logical_name}: attribute {attribute.name!r} declared as both "
                    f"{seen[attribute.name]} and {attribute.type}"
                )
        names = [index.name for index in self.indexes]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.logical_name}: duplicate index names {names}")

    def _all_keys(self) -> Iterable[KeyAttribute]:
        yield self.partition_key
        if self.sort_key is not None:
            yield self.sort_key
        for index in self.indexes:
            yield from index.key_attributes()

    def physical_name(self, env: str) -> str:
        return f"streamer-{env}-{self.logical_name}"

    def key_names(self) -> tuple[str, ...]:
        """Attribute names of the primary key: what a DeleteRequest or GetItem needs."""
        if self.sort_key is None:
            return (self.partition_key.name,)
        return (self.partition_key.name, self.sort_key.name)

    def index(self, name: str) -> IndexSpec:
        for index in self.indexes:
            if index.name == name:
                return index
        raise KeyError(f"{self.logical_name} has no index {name!r}")

    def attribute_definitions(self) -> tuple[KeyAttribute, ...]:
        unique: dict[str, KeyAttribute] = {}
        for attribute in self._all_keys():
            unique.setdefault(attribute.name, attribute)
        return tuple(unique.values())

    def create_table_kwargs(self, env: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "TableName": self.physical_name(env),
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": _key_schema(self.partition_key, self.sort_key),
            "AttributeDefinitions": [
                {"AttributeName": a.name, "AttributeType": a.type}
                for a in self.attribute_definitions()
            ],
        }
        if self.indexes:
            kwargs["GlobalSecondaryIndexes"] = [
                {
                    "IndexName": index.name,
                    "KeySchema": _key_schema(index.partition_key, index.sort_key),
                    "Projection": {"ProjectionType": index.projection},
                }
                for index in self.indexes
            ]
        return kwargs


CONNECTIONS = TableSpec(
    logical_name="connections",
    partition_key=KeyAttribute("connection_id"),
    indexes=(
        IndexSpec("by_tenant", KeyAttribute("tenant_id"), KeyAttribute("connection_id")),
        IndexSpec("by_user", KeyAttribute("tenant_user"), KeyAttribute("connection_id")),
    ),
)
SUBSCRIPTIONS = TableSpec(
    logical_name="subscriptions",
    partition_key=KeyAttribute("connection_id"),
    sort_key=KeyAttribute("topic"),
    indexes=(IndexSpec("by_topic", KeyAttribute("tenant_topic"), KeyAttribute("connection_id")),),
)
REQUESTS = TableSpec(
    logical_name="requests",
    partition_key=KeyAttribute("owner"),
    sort_key=KeyAttribute("request_id"),
)
TABLES: tuple[TableSpec, ...] = (CONNECTIONS, SUBSCRIPTIONS, REQUESTS)


def create_tables(client: Any, env: str) -> dict[str, str]:
    """Bring the tables of `env` into existence; safe to run again against existing tables.

    The local stack runs this on every start, so an existing table or an already enabled
    TTL must be accepted rather than treated as an error.
    """
    names = {spec.logical_name: spec.physical_name(env) for spec in TABLES}
    for spec in TABLES:
        try:
            client.create_table(**spec.create_table_kwargs(env))
        except ClientError as exc:
            if error_code(exc) != "ResourceInUseException":
                raise
    waiter = client.get_waiter("table_exists")
    for spec in TABLES:
        name = names[spec.logical_name]
        waiter.wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        if spec.ttl_attribute is not None:
            _enable_ttl(client, name, spec.ttl_attribute)
    return names


def _enable_ttl(client: Any, table_name: str, attribute: str) -> None:
    # UpdateTimeToLive fails when TTL is already on, so look before writing.
    description = client.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
    status = description.get("TimeToLiveStatus")
    if status in ("ENABLED", "ENABLING") and description.get("AttributeName") == attribute:
        return
    client.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute},
    )
