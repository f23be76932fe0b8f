"""Open WebSocket connections: who is behind each one, and how fast they are talking."""

from __future__ import annotations

import math
import time
from typing import Any

from botocore.exceptions import ClientError

from streamer_core.storage.clock import Clock, is_live
from streamer_core.storage.codec import (
    attribute_value,
    compose_key,
    deserialize_item,
    serialize_item,
)
from streamer_core.storage.conditions import rejected_item
from streamer_core.storage.pagination import Page, query_page
from streamer_core.storage.records import Connection
from streamer_core.storage.tables import CONNECTIONS

_BY_TENANT = CONNECTIONS.index("by_tenant")
_BY_USER = CONNECTIONS.index("by_user")
# A conflicting concurrent window reset costs one more round; more than this means the
# item keeps changing under us and refusing the message is the safe answer.
_RATE_LIMIT_ATTEMPTS = 3


def _to_connection(item: dict[str, Any]) -> Connection:
    return Connection(
        connection_id=item["connection_id"],
        user_id=item["user_id"],
        tenant_id=item["tenant_id"],
        permissions=frozenset(item.get("permissions", ())),
        connected_at=int(item["connected_at"]),
        expires_at=int(item["expires_at"]),
        domain_name=item.get("domain_name"),
        stage=item.get("stage"),
    )


class ConnectionStore:
    """The gateway's record of who is on each connection.

    Items carry a TTL so a connection whose $disconnect never arrived still disappears once
    API Gateway's two-hour connection lifetime is over.
    """

    def __init__(self, client: Any, table_name: str, *, clock: Clock = time.time) -> None:
        self._client = client
        self._table = table_name
        self._clock = clock

    def _key(self, connection_id: str) -> dict[str, Any]:
        return {"connection_id": {"S": connection_id}}

    def _live(self, item: dict[str, Any]) -> bool:
        return is_live(item.get("expires_at"), self._clock())

    def put(self, connection: Connection) -> None:
        item = serialize_item(
            {
                "connection_id": connection.connection_id,
                "user_id": connection.user_id,
                "tenant_id": connection.tenant_id,
                "tenant_user": compose_key(connection.tenant_id, connection.user_id),
                # A list, not a string set: DynamoDB refuses empty sets.
                "permissions": sorted(connection.permissions),
                "connected_at": connection.connected_at,
                "expires_at": connection.expires_at,
                "domain_name": connection.domain_name,
                "stage": connection.stage,
            }
        )
        self._client.put_item(TableName=self._table, Item=item)

    def get(self, connection_id: str) -> Connection | None:
        response = self._client.get_item(
            TableName=self._table, Key=self._key(connection_id), ConsistentRead=True
        )
        raw = response.get("Item")
        if not raw:
            return None
        item = deserialize_item(raw)
        return _to_connection(item) if self._live(item) else None

    def delete(self, connection_id: str) -> Connection | None:
        response = self._client.delete_item(
            TableName=self._table, Key=self._key(connection_id), ReturnValues="ALL_OLD"
        )
        raw = response.get("Attributes")
        if not raw:
            return None
        item = deserialize_item(raw)
        return _to_connection(item) if self._live(item) else None

    def list_by_user(
        self, tenant_id: str, user_id: str, *, limit: int = 100, next_token: str | None = None
    ) -> Page[Connection]:
        return query_page(
            self._client,
            table_name=self._table,
            index_name=_BY_USER.name,
            partition=("tenant_user", compose_key(tenant_id, user_id)),
            key_names=("connection_id", "tenant_user"),
            limit=limit,
            next_token=next_token,
            keep=self._live,
            convert=_to_connection,
        )

    def list_by_tenant(
        self, tenant_id: str, *, limit: int = 100, next_token: str | None = None
    ) -> Page[Connection]:
        return query_page(
            self._client,
            table_name=self._table,
            index_name=_BY_TENANT.name,
            partition=("tenant_id", tenant_id),
            key_names=("connection_id", "tenant_id"),
            limit=limit,
            next_token=next_token,
            keep=self._live,
            convert=_to_connection,
        )

    def hit_rate_limit(self, connection_id: str, *, limit: int, window_seconds: int = 60) -> bool:
        """Count one message against a fixed window; True when it is allowed.

        The counter lives on the connection item and the check-and-increment is a single
        conditional UpdateItem, so concurrent router invocations cannot both slip under the
        limit. Only the first message of a new window needs a second write, to reset it.
        Unknown or expired connections are refused.
        """
        if limit < 1 or window_seconds < 1:
            raise ValueError("limit and window_seconds must be at least 1")
        now = self._clock()
        window = math.floor(now / window_seconds) * window_seconds
        for _ in range(_RATE_LIMIT_ATTEMPTS):
            old = self._count_in_window(connection_id, window, limit, now)
            if old is None:
                return True
            if not old or not self._live(old):
                return False
            stored_window = old.get("rate_window")
            if stored_window is not None and stored_window >= window:
                if stored_window > window:
                    # Another invocation's clock is ahead of ours: count in its window
                    # rather than resetting the counter backwards.
                    window = stored_window
                    continue
                if old.get("rate_count", 0) >= limit:
                    return False
                continue
            if self._start_window(connection_id, window, now):
                return True
        return False

    def _count_in_window(
        self, connection_id: str, window: int, limit: int, now: float
    ) -> dict[str, Any] | None:
        """Count one in `window`: None on success, else the item as it was ({} when absent)."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(connection_id),
                UpdateExpression="SET rate_count = rate_count + :one",
                ConditionExpression=(
                    "expires_at > :now AND rate_window = :window AND rate_count < :limit"
                ),
                ExpressionAttributeValues={
                    ":one": attribute_value(1),
                    ":now": attribute_value(int(now)),
                    ":window": attribute_value(window),
                    ":limit": attribute_value(limit),
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            raw = rejected_item(exc)
            return deserialize_item(raw) if raw else {}
        return None

    def _start_window(self, connection_id: str, window: int, now: float) -> bool:
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(connection_id),
                UpdateExpression="SET rate_window = :window, rate_count = :one",
                ConditionExpression=(
                    "attribute_exists(connection_id) AND expires_at > :now"
                    " AND (attribute_not_exists(rate_window) OR rate_window < :window)"
                ),
                ExpressionAttributeValues={
                    ":one": attribute_value(1),
                    ":now": attribute_value(int(now)),
                    ":window": attribute_value(window),
                },
            )
        except ClientError as exc:
            rejected_item(exc)
            return False
        return True
