"""ConnectionStore against moto: lifecycle, expiry, paginated listings, rate limiting."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import pytest
from streamer_core.storage import (
    Connection,
    ConnectionStore,
    InvalidTokenError,
    Page,
)

if TYPE_CHECKING:
    from conftest import AtomicCallsClient, FakeClock

TABLE = "streamer-test-connections"


def _connection(
    clock: FakeClock,
    connection_id: str,
    *,
    user: str = "alice",
    tenant: str = "acme",
    lifetime: int = 7200,
    **extra: Any,
) -> Connection:
    return Connection(
        connection_id=connection_id,
        user_id=user,
        tenant_id=tenant,
        permissions=frozenset(extra.pop("permissions", {"reports:read"})),
        connected_at=int(clock() * 1000),
        expires_at=int(clock()) + lifetime,
        **extra,
    )


def _collect(fetch: Any, limit: int) -> tuple[list[str], list[Page[Connection]]]:
    pages: list[Page[Connection]] = []
    token: str | None = None
    while True:
        page = fetch(limit=limit, next_token=token)
        pages.append(page)
        token = page.next_token
        if token is None:
            return [c.connection_id for p in pages for c in p.items], pages


def test_put_then_get_returns_every_field(
    connection_store: ConnectionStore, clock: FakeClock
) -> None:
    full = _connection(
        clock,
        "c-full",
        permissions={"a", "b:c"},
        domain_name="abc.execute-api.eu-west-1.amazonaws.com",
        stage="prod",
    )
    bare = _connection(clock, "c-bare", permissions=set())
    connection_store.put(full)
    connection_store.put(bare)
    assert connection_store.get("c-full") == full
    assert connection_store.get("c-bare") == bare
    assert connection_store.get("c-missing") is None


def test_an_expired_connection_reads_as_absent_everywhere(
    connection_store: ConnectionStore, clock: FakeClock
) -> None:
    connection_store.put(_connection(clock, "c1", lifetime=60))
    clock.advance(59)
    assert connection_store.get("c1") is not None
    clock.advance(1)
    assert connection_store.get("c1") is None
    assert connection_store.list_by_user("acme", "alice").items == []
    assert connection_store.list_by_tenant("acme").items == []
    assert connection_store.delete("c1") is None


def test_delete_returns_the_old_connection_once(
    connection_store: ConnectionStore, clock: FakeClock
) -> None:
    connection = _connection(clock, "c1")
    connection_store.put(connection)
    assert connection_store.delete("c1") == connection
    assert connection_store.delete("c1") is None
    assert connection_store.get("c1") is None


def test_list_by_user_pages_through_every_connection_once(
    connection_store: ConnectionStore, clock: FakeClock
) -> None:
    mine = {f"c{i:02d}" for i in range(7)}
    for connection_id in mine:
        connection_store.put(_connection(clock, connection_id))
    connection_store.put(_connection(clock, "other-user", user="bob"))
    connection_store.put(_connection(clock, "other-tenant", tenant="globex"))

    ids, pages = _collect(lambda **kw: connection_store.list_by_user("acme", "alice", **kw), 3)

    assert sorted(ids) == sorted(mine)
    assert len(pages) >= 3
    assert all(len(page.items) <= 3 for page in pages)


def test_list_by_tenant_pages_and_skips_expired_items_in_between(
    connection_store: ConnectionStore, clock: FakeClock
) -> None:
    for i in range(10):
        lifetime = 30 if i % 3 == 0 else 3600
        connection_store.put(_connection(clock, f"c{i:02d}", user=f"u{i}", lifetime=lifetime))
    connection_store.put(_connection(clock, "elsewhere", tenant="globex"))
    clock.advance(60)

    ids, pages = _collect(lambda **kw: connection_store.list_by_tenant("acme", **kw), 2)

    assert sorted(ids) == [f"c{i:02d}" for i in range(10) if i % 3 != 0]
    assert all(len(page.items) <= 2 for page in pages)
    assert [c.connection_id for c in connection_store.list_by_tenant("globex").items] == [
        "elsewhere"
    ]


def test_a_token_from_another_tenant_is_refused(
    connection_store: ConnectionStore, clock: FakeClock
) -> None:
    for i in range(3):
        connection_store.put(_connection(clock, f"a{i}", tenant="acme"))
    token = connection_store.list_by_tenant("acme", limit=1).next_token
    assert token is not None
    with pytest.raises(InvalidTokenError):
        connection_store.list_by_tenant("globex", limit=1, next_token=token)
    with pytest.raises(InvalidTokenError):
        connection_store.list_by_user("acme", "alice", limit=1, next_token=token)


def test_a_limit_below_one_is_refused(connection_store: ConnectionStore) -> None:
    with pytest.raises(ValueError, match="limit"):
        connection_store.list_by_tenant("acme", limit=0)


def test_tenant_ids_containing_the_key_separator_are_refused(
    connection_store: ConnectionStore, clock: FakeClock
) -> None:
    with pytest.raises(ValueError, match="tenant_id"):
        connection_store.put(_connection(clock, "c1", tenant="ac#me"))


def _count_updates(client: Any) -> list[str]:
    calls: list[str] = []
    client.meta.events.register(
        "before-call.dynamodb.UpdateItem", lambda **_kw: calls.append("UpdateItem")
    )
    return calls


def test_rate_limit_allows_limit_messages_per_fixed_window(
    connection_store: ConnectionStore, clock: FakeClock, dynamodb: Any
) -> None:
    connection_store.put(_connection(clock, "c1"))
    connection_store.put(_connection(clock, "c2"))
    clock.now = 1_800_000_000.0  # the start of a 60 s window

    assert [connection_store.hit_rate_limit("c1", limit=3) for _ in range(5)] == [
        True,
        True,
        True,
        False,
        False,
    ]
    assert connection_store.hit_rate_limit("c2", limit=3) is True

    clock.advance(59.9)
    assert connection_store.hit_rate_limit("c1", limit=3) is False
    clock.advance(0.1)
    assert [connection_store.hit_rate_limit("c1", limit=3) for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]


def test_rate_limit_costs_one_update_per_message_within_a_window(
    connection_store: ConnectionStore, clock: FakeClock, dynamodb: Any
) -> None:
    connection_store.put(_connection(clock, "c1"))
    connection_store.hit_rate_limit("c1", limit=10, window_seconds=10)
    calls = _count_updates(dynamodb)
    for _ in range(12):
        connection_store.hit_rate_limit("c1", limit=10, window_seconds=10)
    assert len(calls) == 12


def test_rate_limit_refuses_unknown_and_expired_connections(
    connection_store: ConnectionStore, clock: FakeClock
) -> None:
    assert connection_store.hit_rate_limit("nobody", limit=5) is False
    connection_store.put(_connection(clock, "c1", lifetime=10))
    clock.advance(10)
    assert connection_store.hit_rate_limit("c1", limit=5) is False
    assert connection_store.get("c1") is None


def test_rate_limit_follows_a_window_written_by_a_clock_that_runs_ahead(
    dynamodb: Any, clock: FakeClock
) -> None:
    ahead = type(clock)(clock() + 60)
    store = ConnectionStore(dynamodb, TABLE, clock=clock)
    store_ahead = ConnectionStore(dynamodb, TABLE, clock=ahead)
    store.put(_connection(clock, "c1"))
    assert store_ahead.hit_rate_limit("c1", limit=2) is True
    assert store.hit_rate_limit("c1", limit=2) is True
    assert store.hit_rate_limit("c1", limit=2) is False
    assert store_ahead.hit_rate_limit("c1", limit=2) is False


def test_rate_limit_rejects_nonsense_settings(connection_store: ConnectionStore) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        connection_store.hit_rate_limit("c1", limit=0)
    with pytest.raises(ValueError, match="at least 1"):
        connection_store.hit_rate_limit("c1", limit=1, window_seconds=0)


def test_concurrent_messages_never_exceed_the_limit(
    atomic_dynamodb: AtomicCallsClient, clock: FakeClock
) -> None:
    store = ConnectionStore(atomic_dynamodb, TABLE, clock=clock)
    store.put(_connection(clock, "c1"))
    clock.now = 1_800_000_010.0
    threads, per_thread, limit = 4, 10, 15
    barrier = threading.Barrier(threads)
    allowed: list[bool] = []
    lock = threading.Lock()

    def send() -> None:
        barrier.wait()
        for _ in range(per_thread):
            result = store.hit_rate_limit("c1", limit=limit)
            with lock:
                allowed.append(result)

    workers = [threading.Thread(target=send) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(allowed) == threads * per_thread
    assert allowed.count(True) == limit


def test_reserve_rate_grants_chunks_then_the_exact_remainder(
    connection_store: ConnectionStore, clock: FakeClock, dynamodb: Any
) -> None:
    connection_store.put(_connection(clock, "c1"))
    clock.now = 1_800_000_000.0
    reserve = connection_store.reserve_rate
    assert reserve("c1", limit=25, window_seconds=60, want=10) == 10
    assert reserve("c1", limit=25, window_seconds=60, want=10) == 10
    assert reserve("c1", limit=25, window_seconds=60, want=10) == 5
    assert reserve("c1", limit=25, window_seconds=60, want=10) == 0
    assert reserve("c1", limit=25, window_seconds=60, want=1) == 0

    clock.advance(60)
    assert reserve("c1", limit=25, window_seconds=60, want=30) == 25
    assert reserve("c1", limit=25, window_seconds=60, want=1) == 0


def test_reserve_rate_costs_one_update_per_chunk(
    connection_store: ConnectionStore, clock: FakeClock, dynamodb: Any
) -> None:
    connection_store.put(_connection(clock, "c1"))
    clock.now = 1_800_000_000.0
    connection_store.reserve_rate("c1", limit=100, window_seconds=60, want=10)
    calls = _count_updates(dynamodb)
    assert connection_store.reserve_rate("c1", limit=100, window_seconds=60, want=10) == 10
    assert len(calls) == 1
    # The remainder costs one failed attempt that reports it, and one that takes it.
    connection_store.reserve_rate("c1", limit=100, window_seconds=60, want=75)
    assert connection_store.reserve_rate("c1", limit=100, window_seconds=60, want=10) == 5
    assert len(calls) == 4


def test_reserve_rate_shares_a_window_with_hit_rate_limit(
    connection_store: ConnectionStore, clock: FakeClock
) -> None:
    connection_store.put(_connection(clock, "c1"))
    clock.now = 1_800_000_000.0
    assert connection_store.reserve_rate("c1", limit=3, window_seconds=60, want=2) == 2
    assert connection_store.hit_rate_limit("c1", limit=3) is True
    assert connection_store.hit_rate_limit("c1", limit=3) is False


def test_reserve_rate_grants_nothing_to_unknown_or_expired_connections(
    connection_store: ConnectionStore, clock: FakeClock
) -> None:
    assert connection_store.reserve_rate("nobody", limit=5, window_seconds=60, want=5) == 0
    connection_store.put(_connection(clock, "c1", lifetime=10))
    assert connection_store.reserve_rate("c1", limit=5, window_seconds=60, want=2) == 2
    clock.advance(10)
    assert connection_store.reserve_rate("c1", limit=5, window_seconds=60, want=2) == 0
    clock.advance(60)
    assert connection_store.reserve_rate("c1", limit=5, window_seconds=60, want=2) == 0


def test_reserve_rate_rejects_nonsense_requests(connection_store: ConnectionStore) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        connection_store.reserve_rate("c1", limit=5, window_seconds=60, want=0)


def test_concurrent_reservations_never_grant_more_than_the_limit(
    atomic_dynamodb: AtomicCallsClient, clock: FakeClock
) -> None:
    store = ConnectionStore(atomic_dynamodb, TABLE, clock=clock)
    store.put(_connection(clock, "c1"))
    clock.now = 1_800_000_010.0
    threads, per_thread, limit, want = 6, 8, 37, 4
    barrier = threading.Barrier(threads)
    grants: list[int] = []
    lock = threading.Lock()

    def reserve() -> None:
        barrier.wait()
        for _ in range(per_thread):
            granted = store.reserve_rate("c1", limit=limit, window_seconds=60, want=want)
            with lock:
                grants.append(granted)

    workers = [threading.Thread(target=reserve) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(grants) == threads * per_thread
    assert all(0 <= granted <= want for granted in grants)
    assert sum(grants) <= limit
    # Whatever the race left over is still there to take, and not one unit more.
    left = store.reserve_rate("c1", limit=limit, window_seconds=60, want=limit)
    assert sum(grants) + left == limit


def test_reserve_rate_opens_a_window_in_one_write_when_told_to_expect_it(
    connection_store: ConnectionStore, clock: FakeClock, dynamodb: Any
) -> None:
    connection_store.put(_connection(clock, "c1"))
    clock.now = 1_800_000_000.0
    calls = _count_updates(dynamodb)
    reserve = connection_store.reserve_rate
    assert reserve("c1", limit=15, window_seconds=60, want=10, expect_new_window=True) == 10
    assert len(calls) == 1
    # Wrongly expected (another container opened it): the failed reset reports the count.
    assert reserve("c1", limit=15, window_seconds=60, want=10, expect_new_window=True) == 5
    assert reserve("c1", limit=15, window_seconds=60, want=10, expect_new_window=True) == 0
    assert reserve("nobody", limit=15, window_seconds=60, want=1, expect_new_window=True) == 0
