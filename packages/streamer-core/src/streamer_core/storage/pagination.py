"""Paginated index queries with opaque continuation tokens.

A token is DynamoDB's LastEvaluatedKey, base64url encoded so callers treat it as opaque.
Tokens travel through clients, so one is checked on the way back in: it must have the key
shape of the query and name the same partition, otherwise a token minted for one tenant's
query could be replayed against another's.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from streamer_core.storage.codec import deserialize_item
from streamer_core.storage.errors import InvalidTokenError

T = TypeVar("T")

# Upper bound on round trips for one page: a partition full of expired items that DynamoDB
# has not deleted yet must not turn one call into an unbounded walk.
MAX_ROUNDS_PER_PAGE = 8
_KEY_TYPES = frozenset({"S", "N", "B"})


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of results; a None next_token means there is nothing after it.

    A page can hold fewer items than asked for (expired items are dropped) and still carry a
    next_token: keep going until next_token is None.
    """

    items: list[T]
    next_token: str | None


def encode_token(last_key: Mapping[str, Any]) -> str:
    raw = json.dumps(last_key, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_token(
    token: str, *, key_names: Collection[str], partition: tuple[str, str]
) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        key = json.loads(raw)
    except (ValueError, binascii.Error) as exc:
        raise InvalidTokenError("next_token is not a token this API issued") from exc
    if not isinstance(key, dict) or set(key) != set(key_names):
        raise InvalidTokenError("next_token does not belong to this query")
    for value in key.values():
        if (
            not isinstance(value, dict)
            or len(value) != 1
            or not set(value) <= _KEY_TYPES
            or not isinstance(next(iter(value.values())), str)
        ):
            raise InvalidTokenError("next_token does not belong to this query")
    name, expected = partition
    if key[name] != {"S": expected}:
        raise InvalidTokenError("next_token does not belong to this query")
    return key


def query_page(
    client: Any,
    *,
    table_name: str,
    index_name: str | None,
    partition: tuple[str, str],
    key_names: Collection[str],
    limit: int,
    next_token: str | None,
    keep: Callable[[dict[str, Any]], bool],
    convert: Callable[[dict[str, Any]], T],
    attributes: Collection[str] = (),
) -> Page[T]:
    """Query one partition, dropping items `keep` rejects, until `limit` items or the end.

    ``attributes``, when given, are the only ones read back (what `keep` and `convert`
    look at): a fan-out needs two attributes of each subscription, and parsing the rest
    of a thousand items is most of the query's cost on the caller's side.

    Each round asks only for what is still missing, so the last evaluated key always sits
    right after the last returned item and the next page neither skips nor repeats one.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    start = (
        decode_token(next_token, key_names=key_names, partition=partition)
        if next_token is not None
        else None
    )
    name, value = partition
    projected_names = {f"#a{index}": attribute for index, attribute in enumerate(attributes)}
    items: list[T] = []
    for _ in range(MAX_ROUNDS_PER_PAGE):
        kwargs: dict[str, Any] = {
            "TableName": table_name,
            "KeyConditionExpression": "#pk = :pk",
            "ExpressionAttributeNames": {"#pk": name, **projected_names},
            "ExpressionAttributeValues": {":pk": {"S": value}},
            "Limit": limit - len(items),
        }
        if projected_names:
            kwargs["ProjectionExpression"] = ", ".join(projected_names)
        if index_name is not None:
            kwargs["IndexName"] = index_name
        else:
            kwargs["ConsistentRead"] = True
        if start is not None:
            kwargs["ExclusiveStartKey"] = start
        response = client.query(**kwargs)
        for raw in response.get("Items", []):
            record = deserialize_item(raw)
            if keep(record):
                items.append(convert(record))
        start = response.get("LastEvaluatedKey")
        if start is None or len(items) >= limit:
            break
    return Page(items=items, next_token=encode_token(start) if start is not None else None)


def query_all(
    client: Any,
    *,
    table_name: str,
    index_name: str | None,
    partition: tuple[str, str],
    key_names: Collection[str],
    keep: Callable[[dict[str, Any]], bool],
    convert: Callable[[dict[str, Any]], T],
    page_size: int = 1000,
    attributes: Collection[str] = (),
) -> list[T]:
    """Every matching item of a partition, following pages until DynamoDB has no more."""
    results: list[T] = []
    token: str | None = None
    while True:
        page = query_page(
            client,
            table_name=table_name,
            index_name=index_name,
            partition=partition,
            key_names=key_names,
            limit=page_size,
            next_token=token,
            keep=keep,
            convert=convert,
            attributes=attributes,
        )
        results.extend(page.items)
        token = page.next_token
        if token is None:
            return results
