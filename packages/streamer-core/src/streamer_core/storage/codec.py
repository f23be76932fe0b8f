"""Conversion between Python values and DynamoDB attribute values.

Two kinds of values live in items. Our own attributes (ids, timestamps, counters, status)
are stored as native DynamoDB types so conditions and indexes can use them. Client data
(payloads, results, progress metadata, error details) is arbitrary JSON and is stored as a
compact JSON string: DynamoDB numbers cannot hold every JSON number (38 digits, exponent
within ±125) and maps nest at most 32 levels, while a string round-trips exactly.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, cast

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from streamer_core.limits import MAX_FRAME_BYTES
from streamer_core.storage.errors import ItemTooLargeError

# One JSON value must fit in one WebSocket frame to ever reach a client. With at most three
# such values in a request item (payload, progress, result or error) the item stays under
# DynamoDB's 400 KB.
MAX_JSON_VALUE_BYTES = MAX_FRAME_BYTES
KEY_SEPARATOR = "#"

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"DynamoDB cannot store {value!r}")
        # repr is the shortest string that reads back as the same float, so no binary noise.
        return Decimal(repr(value))
    if isinstance(value, Mapping):
        return {key: _to_dynamo(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_to_dynamo(item) for item in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _from_dynamo(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(item) for item in value]
    if isinstance(value, set):
        return {_from_dynamo(item) for item in value}
    return value


def attribute_value(value: Any) -> dict[str, Any]:
    """One Python value as a DynamoDB attribute value, floats going through Decimal."""
    serialized: dict[str, Any] = dict(_serializer.serialize(_to_dynamo(value)))
    return serialized


def serialize_item(values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """An item for the low-level client; None means "attribute absent", not NULL."""
    return {name: attribute_value(value) for name, value in values.items() if value is not None}


def deserialize_item(item: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {
        name: _from_dynamo(_deserializer.deserialize(cast(Any, value)))
        for name, value in item.items()
    }


def dump_json(value: Any, *, field: str) -> str:
    """Compact JSON for a client value, refused when it could never be delivered."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    size = len(text.encode("utf-8"))
    if size > MAX_JSON_VALUE_BYTES:
        raise ItemTooLargeError(field, size, MAX_JSON_VALUE_BYTES)
    return text


def load_json(text: str) -> Any:
    return json.loads(text)


def content_hash(value: Any) -> str:
    """Same JSON content, same hash, whatever the key order the client happened to send."""
    canonical = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def compose_key(tenant_id: str, rest: str) -> str:
    """A tenant-scoped key such as ``tenant#user`` or ``tenant#topic``.

    A separator inside the tenant id would let ``a#b`` + ``c`` collide with ``a`` + ``b#c``
    and leak data across tenants, so such a tenant id is refused outright.
    """
    if not tenant_id or KEY_SEPARATOR in tenant_id:
        raise ValueError(f"tenant_id must be non-empty and free of {KEY_SEPARATOR!r}")
    return f"{tenant_id}{KEY_SEPARATOR}{rest}"
