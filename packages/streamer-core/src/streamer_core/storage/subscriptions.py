"""Which connections listen to which topic, always within one tenant."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import ClientError

from streamer_core.backoff import full_jitter_delay
from streamer_core.storage.clock import Clock, epoch_ms, is_live
from streamer_core.storage.codec import (
    attribute_value,
    compose_key,
    deserialize_item,
    serialize_item,
)
from streamer_core.storage.conditions import rejected_item
from streamer_core.storage.errors import UnprocessedItemsError
from streamer_core.storage.pagination import Page, query_all, query_page
from streamer_core.storage.tables import SUBSCRIPTIONS

_BY_TOPIC = SUBSCRIPTIONS.index("by_topic")
BATCH_WRITE_LIMIT = 25  # DynamoDB's maximum number of requests in one BatchWriteItem
# Attempts for one chunk, and the backoff between them: DynamoDB returns unprocessed items
# under throttling, which clears within a second or two; past that the caller must know.
BATCH_WRITE_ATTEMPTS = 8
_BACKOFF_BASE_SECONDS = 0.05
# Page size for reads that want everything: large pages mean few round trips per fan-out.
FULL_READ_PAGE_SIZE = 1000
_BACKOFF_CAP_SECONDS = 2.0
# What a subscriber lookup reads of each subscription: who, and whether it is still live.
_SUBSCRIBER_ATTRIBUTES = ("connection_id", "expires_at")
# What checking a listed connection reads: who, in which tenant's topic, still live or not.
_MEMBERSHIP_ATTRIBUTES = ("connection_id", "tenant_topic", "expires_at")
BATCH_GET_LIMIT = 100  # DynamoDB's maximum number of keys in one BatchGetItem


class SubscriptionStore:
    """Subscriptions, isolated per tenant by construction.

    Keyed by connection, so a disconnect clears one partition; indexed by tenant#topic, so a
    publish can only ever read subscribers of its own tenant.
    """

    def __init__(
        self,
        client: Any,
        table_name: str,
        *,
        clock: Clock = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._table = table_name
        self._clock = clock
        self._sleep = sleep

    def _live(self, item: dict[str, Any]) -> bool:
        return is_live(item.get("expires_at"), self._clock())

    def _key(self, connection_id: str, topic: str) -> dict[str, Any]:
        return {"connection_id": {"S": connection_id}, "topic": {"S": topic}}

    def subscribe(self, connection_id: str, tenant_id: str, topic: str, *, expires_at: int) -> bool:
        """True when the subscription is new; subscribing twice changes nothing.

        An expired subscription that DynamoDB has not deleted yet counts as absent, so it is
        replaced and reported as new.
        """
        now = self._clock()
        item = serialize_item(
            {
                "connection_id": connection_id,
                "topic": topic,
                "tenant_id": tenant_id,
                "tenant_topic": compose_key(tenant_id, topic),
                "subscribed_at": epoch_ms(now),
                "expires_at": expires_at,
            }
        )
        try:
            self._client.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(connection_id) OR expires_at <= :now",
                ExpressionAttributeValues={":now": attribute_value(int(now))},
            )
        except ClientError as exc:
            rejected_item(exc)
            return False
        return True

    def unsubscribe(self, connection_id: str, topic: str) -> bool:
        """True when a live subscription was removed."""
        response = self._client.delete_item(
            TableName=self._table, Key=self._key(connection_id, topic), ReturnValues="ALL_OLD"
        )
        old = response.get("Attributes")
        return bool(old) and self._live(deserialize_item(old))

    def subscribers(
        self, tenant_id: str, topic: str, *, limit: int = 1000, next_token: str | None = None
    ) -> Page[str]:
        """Subscribed connection ids; a new subscription may take a moment to show (GSI)."""
        return query_page(
            self._client,
            table_name=self._table,
            index_name=_BY_TOPIC.name,
            partition=("tenant_topic", compose_key(tenant_id, topic)),
            key_names=("connection_id", "topic", "tenant_topic"),
            limit=limit,
            next_token=next_token,
            keep=self._live,
            convert=_connection_id,
            attributes=_SUBSCRIBER_ATTRIBUTES,
        )

    def all_subscribers(self, tenant_id: str, topic: str) -> list[str]:
        return query_all(
            self._client,
            table_name=self._table,
            index_name=_BY_TOPIC.name,
            partition=("tenant_topic", compose_key(tenant_id, topic)),
            key_names=("connection_id", "topic", "tenant_topic"),
            keep=self._live,
            convert=_connection_id,
            page_size=FULL_READ_PAGE_SIZE,
            attributes=_SUBSCRIBER_ATTRIBUTES,
        )

    def subscribed(self, tenant_id: str, topic: str, connection_ids: Sequence[str]) -> list[str]:
        """Those of ``connection_ids`` that hold a live subscription to ``topic`` in
        ``tenant_id``, in the order given, each once.

        A fan-out shard lists its connections, but whoever can write to the queue can
        write a shard: each is looked up by its key (connection, topic) and kept only if
        the subscription is this tenant's and live, so a shard reaches the topic's
        subscribers of the tenant it names and nobody else.
        """
        tenant_topic = compose_key(tenant_id, topic)
        wanted = list(dict.fromkeys(connection_ids))
        found: set[str] = set()
        for start in range(0, len(wanted), BATCH_GET_LIMIT):
            chunk = wanted[start : start + BATCH_GET_LIMIT]
            for item in self._get_chunk([self._key(c, topic) for c in chunk]):
                if item.get("tenant_topic") == tenant_topic and self._live(item):
                    found.add(_connection_id(item))
        return [connection_id for connection_id in wanted if connection_id in found]

    def _get_chunk(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        names = {f"#a{index}": name for index, name in enumerate(_MEMBERSHIP_ATTRIBUTES)}
        request: dict[str, Any] = {
            "Keys": keys,
            "ProjectionExpression": ", ".join(names),
            "ExpressionAttributeNames": names,
        }
        items: list[dict[str, Any]] = []
        for attempt in range(BATCH_WRITE_ATTEMPTS):
            if attempt:
                self._sleep(
                    full_jitter_delay(attempt, base=_BACKOFF_BASE_SECONDS, cap=_BACKOFF_CAP_SECONDS)
                )
            response = self._client.batch_get_item(RequestItems={self._table: request})
            items += [
                deserialize_item(raw) for raw in response.get("Responses", {}).get(self._table, [])
            ]
            unprocessed = response.get("UnprocessedKeys", {}).get(self._table)
            if not unprocessed or not unprocessed.get("Keys"):
                return items
            request = {**request, "Keys": unprocessed["Keys"]}
        raise UnprocessedItemsError(len(request["Keys"]))

    def topics_of(self, connection_id: str) -> list[str]:
        return query_all(
            self._client,
            table_name=self._table,
            index_name=None,
            partition=("connection_id", connection_id),
            key_names=SUBSCRIPTIONS.key_names(),
            keep=self._live,
            convert=_topic,
            page_size=FULL_READ_PAGE_SIZE,
        )

    def remove_connection(self, connection_id: str) -> int:
        """Delete every subscription of a connection, expired ones included; returns how many.

        Runs on disconnect, where leaving items behind would keep fanning events out to a
        dead connection until TTL, so unprocessed items are retried and a batch that still
        cannot be written raises instead of being dropped.
        """
        topics = query_all(
            self._client,
            table_name=self._table,
            index_name=None,
            partition=("connection_id", connection_id),
            key_names=SUBSCRIPTIONS.key_names(),
            keep=lambda _item: True,
            convert=_topic,
            page_size=FULL_READ_PAGE_SIZE,
        )
        for start in range(0, len(topics), BATCH_WRITE_LIMIT):
            chunk = topics[start : start + BATCH_WRITE_LIMIT]
            self._delete_chunk([self._key(connection_id, topic) for topic in chunk])
        return len(topics)

    def _delete_chunk(self, keys: list[dict[str, Any]]) -> None:
        pending: list[dict[str, Any]] = [{"DeleteRequest": {"Key": key}} for key in keys]
        for attempt in range(BATCH_WRITE_ATTEMPTS):
            if attempt:
                # Full jitter keeps concurrent disconnects from retrying in lockstep.
                self._sleep(
                    full_jitter_delay(attempt, base=_BACKOFF_BASE_SECONDS, cap=_BACKOFF_CAP_SECONDS)
                )
            response = self._client.batch_write_item(RequestItems={self._table: pending})
            pending = response.get("UnprocessedItems", {}).get(self._table, [])
            if not pending:
                return
        raise UnprocessedItemsError(len(pending))


def _connection_id(item: dict[str, Any]) -> str:
    return str(item["connection_id"])


def _topic(item: dict[str, Any]) -> str:
    return str(item["topic"])
