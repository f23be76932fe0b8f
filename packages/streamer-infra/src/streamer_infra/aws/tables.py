"""DynamoDB tables created from streamer_core's specs, never declared a second time here."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi_aws as aws
from streamer_core.storage import TABLES, KeyAttribute, TableSpec

from streamer_infra.aws.config import StackSettings
from streamer_infra.aws.kms import StackKey


def _key_schema(
    partition: KeyAttribute, sort: KeyAttribute | None
) -> list[aws.dynamodb.TableGlobalSecondaryIndexKeySchemaArgs]:
    schema = [
        aws.dynamodb.TableGlobalSecondaryIndexKeySchemaArgs(
            attribute_name=partition.name, key_type="HASH"
        )
    ]
    if sort is not None:
        schema.append(
            aws.dynamodb.TableGlobalSecondaryIndexKeySchemaArgs(
                attribute_name=sort.name, key_type="RANGE"
            )
        )
    return schema


def create_table(spec: TableSpec, settings: StackSettings, key: StackKey) -> aws.dynamodb.Table:
    """On demand (traffic is bursty and unknown), encrypted with the stack key, recoverable to
    any second of the last 35 days, and expiring items through the spec's TTL attribute."""
    return aws.dynamodb.Table(
        f"table-{spec.logical_name}",
        name=spec.physical_name(settings.environment),
        billing_mode="PAY_PER_REQUEST",
        hash_key=spec.partition_key.name,
        range_key=spec.sort_key.name if spec.sort_key else None,
        attributes=[
            aws.dynamodb.TableAttributeArgs(name=a.name, type=a.type)
            for a in spec.attribute_definitions()
        ],
        global_secondary_indexes=[
            aws.dynamodb.TableGlobalSecondaryIndexArgs(
                name=index.name,
                key_schemas=_key_schema(index.partition_key, index.sort_key),
                projection_type=index.projection,
            )
            for index in spec.indexes
        ]
        or None,
        server_side_encryption=aws.dynamodb.TableServerSideEncryptionArgs(
            enabled=True, kms_key_arn=key.arn
        ),
        point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=True),
        ttl=(
            aws.dynamodb.TableTtlArgs(attribute_name=spec.ttl_attribute, enabled=True)
            if spec.ttl_attribute
            else None
        ),
        deletion_protection_enabled=settings.environment == "production",
        tags=settings.tags,
    )


def create_tables(
    settings: StackSettings, key: StackKey, specs: Sequence[TableSpec] = TABLES
) -> dict[str, aws.dynamodb.Table]:
    """Keyed by the spec's logical name, the name route metadata uses (`table:connections`)."""
    return {spec.logical_name: create_table(spec, settings, key) for spec in specs}
