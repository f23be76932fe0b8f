"""SubscriptionStore against moto: idempotence, tenant isolation, pagination, batch removal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from streamer_core.storage import SubscriptionStore, UnprocessedItemsError
from streamer_core.storage import subscriptions as subscriptions_module

if TYPE_CHECKING:
    from conftest import FakeClock

TABLE = "streamer-test-subscriptions"
HOUR = 3600


def _expiry(clock: FakeClock, seconds: int = HOUR) -> int:
    return int(clock()) + seconds


def test_subscribe_is_idempotent_and_unsubscribe_reports_what_it_removed(
    subscription_store: SubscriptionStore, clock: FakeClock
) -> None:
    expires = _expiry(clock)
    assert subscription_store.subscribe("c1", "acme", "orders", expires_at=expires) is True
    assert subscription_store.subscribe("c1", "acme", "orders", expires_at=expires) is False
    assert subscription_store.topics_of("c1") == ["orders"]
    assert subscription_store.all_subscribers("acme", "orders") == ["c1"]

    assert subscription_store.unsubscribe("c1", "orders") is True
    assert subscription_store.unsubscribe("c1", "orders") is False
    assert subscription_store.topics_of("c1") == []
    assert subscription_store.all_subscribers("acme", "orders") == []


def test_topics_of_lists_every_topic_of_one_connection(
    subscription_store: SubscriptionStore, clock: FakeClock
) -> None:
    topics = ["a", "b/c", "d:e", "f.g-h"]
    for topic in topics:
        subscription_store.subscribe("c1", "acme", topic, expires_at=_expiry(clock))
    subscription_store.subscribe("c2", "acme", "z", expires_at=_expiry(clock))
    assert sorted(subscription_store.topics_of("c1")) == sorted(topics)


def test_the_same_topic_name_in_two_tenants_never_mixes(
    subscription_store: SubscriptionStore, clock: FakeClock
) -> None:
    subscription_store.subscribe("acme-1", "acme", "news", expires_at=_expiry(clock))
    subscription_store.subscribe("acme-2", "acme", "news", expires_at=_expiry(clock))
    subscription_store.subscribe("globex-1", "globex", "news", expires_at=_expiry(clock))

    assert sorted(subscription_store.all_subscribers("acme", "news")) == ["acme-1", "acme-2"]
    assert subscription_store.all_subscribers("globex", "news") == ["globex-1"]
    assert subscription_store.subscribers("globex", "news").items == ["globex-1"]
    assert subscription_store.all_subscribers("initech", "news") == []


def test_a_token_cannot_cross_from_one_tenant_to_another(
    subscription_store: SubscriptionStore, clock: FakeClock
) -> None:
    for i in range(3):
        subscription_store.subscribe(f"a{i}", "acme", "news", expires_at=_expiry(clock))
        subscription_store.subscribe(f"g{i}", "globex", "news", expires_at=_expiry(clock))
    token = subscription_store.subscribers("acme", "news", limit=1).next_token
    assert token is not None
    with pytest.raises(ValueError, match="next_token"):
        subscription_store.subscribers("globex", "news", limit=1, next_token=token)


def test_subscribers_come_in_pages_without_gaps_or_repeats(
    subscription_store: SubscriptionStore, clock: FakeClock
) -> None:
    expected = {f"c{i:02d}" for i in range(11)}
    for connection_id in expected:
        subscription_store.subscribe(connection_id, "acme", "t", expires_at=_expiry(clock))

    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        page = subscription_store.subscribers("acme", "t", limit=4, next_token=token)
        assert len(page.items) <= 4
        seen.extend(page.items)
        pages += 1
        token = page.next_token
        if token is None:
            break
    assert sorted(seen) == sorted(expected)
    assert pages >= 3


def test_all_subscribers_follows_every_page(
    subscription_store: SubscriptionStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subscriptions_module, "FULL_READ_PAGE_SIZE", 2)
    expected = [f"c{i}" for i in range(7)]
    for connection_id in expected:
        subscription_store.subscribe(connection_id, "acme", "t", expires_at=_expiry(clock))
        subscription_store.subscribe(
            "c0", "acme", f"topic-{connection_id}", expires_at=_expiry(clock)
        )
    assert sorted(subscription_store.all_subscribers("acme", "t")) == expected
    assert len(subscription_store.topics_of("c0")) == 8


def test_expired_subscriptions_read_as_absent_and_can_be_renewed(
    subscription_store: SubscriptionStore, clock: FakeClock
) -> None:
    subscription_store.subscribe("short", "acme", "t", expires_at=_expiry(clock, 60))
    subscription_store.subscribe("long", "acme", "t", expires_at=_expiry(clock))
    subscription_store.subscribe("short", "acme", "u", expires_at=_expiry(clock, 60))
    clock.advance(60)

    assert subscription_store.all_subscribers("acme", "t") == ["long"]
    assert subscription_store.subscribers("acme", "t").items == ["long"]
    assert subscription_store.topics_of("short") == []
    assert subscription_store.unsubscribe("short", "u") is False
    assert subscription_store.subscribe("short", "acme", "t", expires_at=_expiry(clock)) is True
    assert sorted(subscription_store.all_subscribers("acme", "t")) == ["long", "short"]


def test_remove_connection_deletes_many_subscriptions_in_batches(
    subscription_store: SubscriptionStore, clock: FakeClock, dynamodb: Any
) -> None:
    for i in range(60):
        subscription_store.subscribe("c1", "acme", f"topic-{i}", expires_at=_expiry(clock))
    subscription_store.subscribe("c1", "acme", "stale", expires_at=_expiry(clock, 1))
    subscription_store.subscribe("c2", "acme", "topic-0", expires_at=_expiry(clock))
    clock.advance(5)
    batches: list[int] = []
    dynamodb.meta.events.register(
        "before-parameter-build.dynamodb.BatchWriteItem",
        lambda params, **_kw: batches.append(len(params["RequestItems"][TABLE])),
    )

    assert subscription_store.remove_connection("c1") == 61

    assert batches == [25, 25, 11]
    assert subscription_store.topics_of("c1") == []
    assert subscription_store.all_subscribers("acme", "topic-0") == ["c2"]
    raw = dynamodb.query(
        TableName=TABLE,
        KeyConditionExpression="connection_id = :c",
        ExpressionAttributeValues={":c": {"S": "c1"}},
    )
    assert raw["Count"] == 0
    assert subscription_store.remove_connection("c1") == 0


class _Throttled:
    """A client whose BatchWriteItem leaves part of each batch undone, like DynamoDB under load."""

    def __init__(self, client: Any, *, refusals: int, keep: int = 3) -> None:
        self._client = client
        self._refusals = refusals
        self._keep = keep
        self.batch_calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch_write_item(self, RequestItems: dict[str, list[Any]]) -> dict[str, Any]:
        self.batch_calls += 1
        ((table, requests),) = RequestItems.items()
        if self._refusals == 0:
            return dict(self._client.batch_write_item(RequestItems=RequestItems))
        self._refusals -= 1
        done, left = requests[: self._keep], requests[self._keep :]
        if done:
            self._client.batch_write_item(RequestItems={table: done})
        return {"UnprocessedItems": {table: left} if left else {}}


def test_remove_connection_retries_unprocessed_items_with_backoff(
    dynamodb: Any, clock: FakeClock
) -> None:
    throttled = _Throttled(dynamodb, refusals=4)
    sleeps: list[float] = []
    store = SubscriptionStore(throttled, TABLE, clock=clock, sleep=sleeps.append)
    for i in range(30):
        store.subscribe("c1", "acme", f"t{i}", expires_at=_expiry(clock))

    assert store.remove_connection("c1") == 30

    assert store.topics_of("c1") == []
    assert throttled.batch_calls == 6
    assert len(sleeps) == 4
    assert all(0 <= delay <= 2.0 for delay in sleeps)


def test_remove_connection_gives_up_loudly_when_items_stay_unprocessed(
    dynamodb: Any, clock: FakeClock
) -> None:
    throttled = _Throttled(dynamodb, refusals=10**6, keep=0)
    sleeps: list[float] = []
    store = SubscriptionStore(throttled, TABLE, clock=clock, sleep=sleeps.append)
    for i in range(5):
        store.subscribe("c1", "acme", f"t{i}", expires_at=_expiry(clock))

    with pytest.raises(UnprocessedItemsError) as caught:
        store.remove_connection("c1")

    assert caught.value.remaining == 5
    assert throttled.batch_calls == subscriptions_module.BATCH_WRITE_ATTEMPTS
    assert len(sleeps) == subscriptions_module.BATCH_WRITE_ATTEMPTS - 1
    assert max(sleeps) <= 2.0
    assert len(store.topics_of("c1")) == 5


def test_a_page_of_only_expired_items_is_empty_but_points_onwards(
    subscription_store: SubscriptionStore, clock: FakeClock
) -> None:
    for i in range(20):
        subscription_store.subscribe(f"a{i:02d}", "acme", "t", expires_at=_expiry(clock, 10))
    subscription_store.subscribe("z-live", "acme", "t", expires_at=_expiry(clock))
    clock.advance(10)

    first = subscription_store.subscribers("acme", "t", limit=2)
    assert first.items == []
    assert first.next_token is not None

    seen: list[str] = []
    token: str | None = first.next_token
    while token is not None:
        page = subscription_store.subscribers("acme", "t", limit=2, next_token=token)
        seen.extend(page.items)
        token = page.next_token
    assert seen == ["z-live"]
