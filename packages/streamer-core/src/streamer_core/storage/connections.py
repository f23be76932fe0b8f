"""Open WebSocket connections: who is behind each one, and how fast they are talking."""

from __future__ import annotations

import math
import time
from typing import Any, NamedTuple

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
# A conflicting concurrent window reset, a clock running ahead and a remainder smaller than
# asked for each cost one more round; more than this means the item keeps changing under us
# and granting nothing is the safe answer.
_RATE_LIMIT_ATTEMPTS = 4


class RateGrant(NamedTuple):
    """What one rate-limit reservation came to."""

    units: int
    window: int
    """Start (epoch seconds) of the window the units count in: the table's, when another
    container's clock runs ahead of ours."""
    spent: bool = False
    """Nothing granted because the live connection's window is used up (not because the
    connection is unknown, or the item kept changing)."""


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

        One unit taken with :meth:`reserve_rate`, so the same single conditional UpdateItem
        guards it and concurrent router invocations cannot both slip under the limit.
        Unknown or expired connections are refused.
        """
        return (
            self.reserve_rate(connection_id, limit=limit, window_seconds=window_seconds, want=1)
            == 1
        )

    def reserve_rate(
        self,
        connection_id: str,
        *,
        limit: int,
        window_seconds: int = 60,
        want: int = 1,
        expect_new_window: bool = False,
    ) -> int:
        """Take up to ``want`` units of this window's budget; how many were granted.

        0 means nothing is left in the window *or* the connection is unknown or expired;
        :meth:`take_rate` tells the two apart.
        """
        return self.take_rate(
            connection_id,
            limit=limit,
            window_seconds=window_seconds,
            want=want,
            expect_new_window=expect_new_window,
        ).units

    def take_rate(
        self,
        connection_id: str,
        *,
        limit: int,
        window_seconds: int = 60,
        want: int = 1,
        expect_new_window: bool = False,
    ) -> RateGrant:
        """Take up to ``want`` units of this window's budget, saying why when none are granted.

        A caller that counts messages locally (many Lambda containers, each with its own
        memory) reserves a chunk here and spends it without further writes. The counter
        lives on the connection item and the take is one conditional UpdateItem whose
        condition keeps the total taken in a window at or below ``limit``, so the sum of all
        grants across every caller never exceeds it. When fewer than ``want`` remain, the
        failed condition hands back the item (ReturnValuesOnConditionCheckFailure) and the
        exact remainder is asked for next, without a read. The first take of a new window
        resets the counter; a caller that knows of no take in the current window says so
        with ``expect_new_window`` and the reset is tried first, so a window's first chunk
        costs one write, not a failed add and a reset.

        The item handed back by a refusal also says why nothing was granted: ``spent`` is
        True when the connection is live and its window is used up (nothing will be granted
        again before the window named by ``window`` ends), False when the connection is
        unknown or expired, or the item kept changing under us. A caller may remember a
        spent window and refuse locally until it ends, since counts only grow within one.
        """
        if limit < 1 or window_seconds < 1 or want < 1:
            raise ValueError("limit, window_seconds and want must be at least 1")
        now = self._clock()
        window = math.floor(now / window_seconds) * window_seconds
        want = min(want, limit)
        start = expect_new_window
        for _ in range(_RATE_LIMIT_ATTEMPTS):
            if start:
                old = self._start_window(connection_id, window, want, now)
            else:
                old = self._take_in_window(connection_id, window, limit, want, now)
            if old is None:
                return RateGrant(want, window)
            if not old or not self._live(old):
                return RateGrant(0, window)
            stored_window = old.get("rate_window")
            if stored_window is None or stored_window < window:
                start = True
                continue
            start = False
            if stored_window > window:
                # Another invocation's clock is ahead of ours: count in its window
                # rather than resetting the counter backwards.
                window = stored_window
                continue
            remaining = limit - int(old.get("rate_count", 0))
            if remaining <= 0:
                return RateGrant(0, window, spent=True)
            want = min(want, remaining)
        return RateGrant(0, window)

    def _take_in_window(
        self, connection_id: str, window: int, limit: int, want: int, now: float
    ) -> dict[str, Any] | None:
        """Add ``want`` in `window`: None on success, else the item as it was ({} when absent)."""
        return self._update_rate(
            connection_id,
            "SET rate_count = rate_count + :want",
            # Condition expressions cannot add, so the ceiling is computed here.
            "expires_at > :now AND rate_window = :window AND rate_count <= :ceiling",
            want=want,
            now=int(now),
            window=window,
            ceiling=limit - want,
        )

    def _start_window(
        self, connection_id: str, window: int, want: int, now: float
    ) -> dict[str, Any] | None:
        """Open `window` with ``want`` taken: None on success, else the item as it was."""
        return self._update_rate(
            connection_id,
            "SET rate_window = :window, rate_count = :want",
            "attribute_exists(connection_id) AND expires_at > :now"
            " AND (attribute_not_exists(rate_window) OR rate_window < :window)",
            want=want,
            now=int(now),
            window=window,
        )

    def _update_rate(
        self, connection_id: str, update: str, condition: str, **values: int
    ) -> dict[str, Any] | None:
        """Apply `update` if `condition` holds, each of ``values`` bound to its ``:name``.

        None on success, else the item as it was ({} when absent): the refusal hands it back,
        so the caller decides its next step without a read.
        """
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(connection_id),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeValues={
                    f":{name}": attribute_value(value) for name, value in values.items()
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            raw = rejected_item(exc)
            return deserialize_item(raw) if raw else {}
        return None
