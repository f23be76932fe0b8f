"""The router's rate limit: budgets reserved in DynamoDB by the chunk, spent in memory."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from streamer_core.storage import Storage
from streamer_handlers._router.rate_limit import (
    RateBudget,
    Verdict,
    budget_for,
    default_chunk,
    largest_chunk,
)
from streamer_handlers.deployment import Runtime, set_runtime
from streamer_handlers.functions import router

if TYPE_CHECKING:
    from conftest import Stack


class CountingClient:
    """The moto client, each call applied atomically (as DynamoDB does) and counted."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()
        self.calls: list[str] = []

    def count(self, operation: str) -> int:
        return self.calls.count(operation)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls.append(name)
                return attribute(*args, **kwargs)

        return call


class FakeReserver:
    """A table of one window per connection, in memory, for the budget's own logic."""

    def __init__(self) -> None:
        self.taken: dict[str, int] = {}
        self.known: set[str] = set()
        self.calls = 0
        self.asked: list[int] = []
        self.new_window_resets = False
        """Let a reservation that expects a new window start the count again."""
        self._lock = threading.Lock()

    def reserve_rate(
        self,
        connection_id: str,
        *,
        limit: int,
        window_seconds: int = 60,
        want: int = 1,
        expect_new_window: bool = False,
    ) -> int:
        with self._lock:
            self.calls += 1
            self.asked.append(want)
            if self.new_window_resets and expect_new_window:
                self.taken.pop(connection_id, None)
            if connection_id not in self.known:
                return 0
            granted = max(0, min(want, limit - self.taken.get(connection_id, 0)))
            self.taken[connection_id] = self.taken.get(connection_id, 0) + granted
            return granted


@pytest.fixture
def counted(stack: Stack, aws: dict[str, Any]) -> CountingClient:
    """The stack's runtime rebuilt on a counting client, same tables."""
    client = CountingClient(aws["dynamodb"])
    runtime = Runtime(
        stack.runtime.settings,
        dynamodb=client,
        sqs=aws["sqs"],
        sender=stack.sender,
        app=stack.app,
        clock=stack.clock,
        schedule=stack.scheduler,
    )
    stack.runtime = runtime
    set_runtime(runtime)
    return client


def _pings(stack: Stack, connection: str, count: int, prefix: str = "p") -> list[dict[str, Any]]:
    return [stack.send(connection, {"action": "ping", "id": f"{prefix}{i}"}) for i in range(count)]


def test_a_hundred_messages_a_minute_then_rate_limited(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stack.runtime.settings.rate_limit == 100
    connection = stack.connect()
    stack.clock.now = 1_800_000_000.0  # the start of a window
    replies = _pings(stack, connection, 101)
    assert [r["type"] for r in replies[:100]] == ["pong"] * 100
    assert replies[100]["code"] == "RATE_LIMITED"
    assert replies[100]["request_id"] == "p100"
    assert replies[100]["details"] == {"limit": 100, "window_seconds": 60}
    assert '"RateLimited"' in capsys.readouterr().out

    stack.clock.advance(59.9)
    assert stack.send(connection, {"action": "ping"})["code"] == "RATE_LIMITED"
    stack.clock.advance(0.1)
    replies = _pings(stack, connection, 101, prefix="q")
    assert [r["type"] for r in replies[:100]] == ["pong"] * 100
    assert replies[100]["code"] == "RATE_LIMITED"


@pytest.mark.parametrize(("messages", "chunk"), [(35, None), (30, 7), (5, 1)])
def test_the_router_writes_once_per_chunk_not_per_message(
    stack: Stack, counted: CountingClient, messages: int, chunk: int | None
) -> None:
    runtime = stack.reconfigure(rate_limit_chunk=chunk)
    expected_chunk = chunk or default_chunk(runtime.settings.rate_limit)
    connection = stack.connect()
    stack.clock.now = 1_800_000_000.0
    before = counted.count("update_item")
    replies = _pings(stack, connection, messages)
    assert all(r["type"] == "pong" for r in replies)
    assert counted.count("update_item") - before <= math.ceil(messages / expected_chunk)


def test_the_limit_holds_between_windows_for_every_connection_apart(stack: Stack) -> None:
    stack.reconfigure(rate_limit=25)
    first, second = stack.connect(), stack.connect()
    stack.clock.now = 1_800_000_000.0
    assert all(r["type"] == "pong" for r in _pings(stack, first, 25))
    assert stack.send(first, {"action": "ping"})["code"] == "RATE_LIMITED"
    assert all(r["type"] == "pong" for r in _pings(stack, second, 25))
    stack.clock.advance(60)
    assert stack.send(first, {"action": "ping"})["type"] == "pong"


def test_a_changed_limit_is_not_served_from_a_budget_reserved_under_the_old_one(
    stack: Stack,
) -> None:
    connection = stack.connect()
    stack.clock.now = 1_800_000_000.0
    assert stack.send(connection, {"action": "ping"})["type"] == "pong"  # banks 9 more
    stack.reconfigure(rate_limit=1)
    # The table already counts 10 in this window, above the new limit of 1.
    assert stack.send(connection, {"action": "ping"})["code"] == "RATE_LIMITED"


def test_two_containers_sharing_the_table_never_exceed_the_limit_together(
    stack: Stack, aws: dict[str, Any]
) -> None:
    connection = stack.connect()
    stack.clock.now = 1_800_000_000.0
    client = CountingClient(aws["dynamodb"])
    containers = [
        RateBudget(Storage(client, env=aws["env"], clock=stack.clock).connections) for _ in range(2)
    ]

    def take(budget: RateBudget) -> bool:
        return budget.take(connection, limit=100, window_seconds=60, now=stack.clock(), chunk=10)

    # One message in the first container strands the rest of its chunk there; everything
    # else goes through the second, which gets what is left and not one unit more.
    assert take(containers[0]) is True
    second = [take(containers[1]) for _ in range(120)]
    assert second.count(True) == 90
    assert [take(containers[0]) for _ in range(12)].count(True) == 9
    assert not take(containers[1])
    stack.clock.advance(60)
    assert take(containers[1]) is True


def test_racing_containers_and_threads_never_exceed_the_limit(
    stack: Stack, aws: dict[str, Any]
) -> None:
    connection = stack.connect()
    stack.clock.now = 1_800_000_010.0
    client = CountingClient(aws["dynamodb"])
    containers = [
        RateBudget(Storage(client, env=aws["env"], clock=stack.clock).connections) for _ in range(3)
    ]
    threads_per_container, per_thread, limit = 3, 20, 50
    barrier = threading.Barrier(len(containers) * threads_per_container)
    allowed: list[bool] = []
    lock = threading.Lock()

    def send(budget: RateBudget) -> None:
        barrier.wait()
        for _ in range(per_thread):
            result = budget.take(
                connection, limit=limit, window_seconds=60, now=stack.clock(), chunk=4
            )
            with lock:
                allowed.append(result)

    workers = [
        threading.Thread(target=send, args=(budget,))
        for budget in containers
        for _ in range(threads_per_container)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(allowed) == len(workers) * per_thread
    assert 0 < allowed.count(True) <= limit


def test_an_unknown_connection_is_refused_not_rate_limited(stack: Stack) -> None:
    known = stack.connect()
    event = stack.events.message(
        "ghost=", json.dumps({"action": "ping", "id": "g"}), stack._principals[known]
    )
    body = json.loads(router.handler(event, stack.context())["body"])
    assert (body["code"], body["request_id"]) == ("UNAUTHORIZED", "g")


def test_a_removed_connection_is_refused_once_its_local_chunk_is_spent(stack: Stack) -> None:
    connection = stack.connect()
    stack.clock.now = 1_800_000_000.0
    chunk = default_chunk(stack.runtime.settings.rate_limit)
    assert stack.send(connection, {"action": "ping"})["type"] == "pong"
    stack.runtime.storage.connections.delete(connection)
    replies = _pings(stack, connection, chunk)
    served = [r for r in replies if r["type"] == "pong"]
    assert len(served) <= chunk - 1
    assert replies[-1]["code"] == "UNAUTHORIZED"


def test_the_budget_is_kept_per_store_across_invocations(stack: Stack) -> None:
    store = stack.runtime.storage.connections
    assert budget_for(store) is budget_for(store)
    other = Storage(stack.runtime.dynamodb, env=stack.runtime.settings.env).connections
    assert budget_for(other) is not budget_for(store)


def test_budget_entries_of_ended_windows_are_dropped() -> None:
    reserver = FakeReserver()
    reserver.known.update({"a", "b", "c"})
    budget = RateBudget(reserver)
    assert budget.take("a", limit=100, window_seconds=60, now=0.0)
    assert budget.take("b", limit=100, window_seconds=60, now=30.0)
    assert len(budget) == 2
    assert budget.take("c", limit=100, window_seconds=60, now=61.0)
    assert len(budget) == 1


def test_budget_memory_is_capped_least_recently_used_first() -> None:
    reserver = FakeReserver()
    reserver.known.update(f"c{i}" for i in range(10))
    budget = RateBudget(reserver, max_entries=3)
    for i in range(10):
        assert budget.take(f"c{i}", limit=100, window_seconds=60, now=1.0)
    assert len(budget) == 3
    calls = reserver.calls
    assert budget.take("c9", limit=100, window_seconds=60, now=2.0)
    assert reserver.calls == calls  # still banked
    assert budget.take("c0", limit=100, window_seconds=60, now=2.0)
    assert reserver.calls == calls + 1  # evicted, so reserved again


def test_budget_refuses_what_the_table_refuses() -> None:
    reserver = FakeReserver()
    budget = RateBudget(reserver)
    assert not budget.take("nobody", limit=5, window_seconds=60, now=0.0)
    assert len(budget) == 0
    reserver.known.add("a")
    assert [budget.take("a", limit=5, window_seconds=60, now=0.0) for _ in range(7)] == [
        True
    ] * 5 + [False] * 2


def test_threads_in_one_container_share_its_reservations() -> None:
    reserver = FakeReserver()
    reserver.known.add("a")
    budget = RateBudget(reserver)
    limit, threads, per_thread = 100, 8, 20
    barrier = threading.Barrier(threads)
    allowed: list[bool] = []
    lock = threading.Lock()

    def send() -> None:
        barrier.wait()
        for _ in range(per_thread):
            result = budget.take("a", limit=limit, window_seconds=60, now=5.0, chunk=7)
            with lock:
                allowed.append(result)

    workers = [threading.Thread(target=send) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    # Concurrent reservations add up instead of replacing each other: nothing is lost.
    assert allowed.count(True) == limit


class ExplainingReserver(FakeReserver):
    """A fake table that, like the real one, says why it granted nothing."""

    def take_rate(self, connection_id: str, **kwargs: Any) -> Any:
        from streamer_core.storage.connections import RateGrant

        granted = self.reserve_rate(connection_id, **kwargs)
        spent = granted == 0 and connection_id in self.known
        return RateGrant(granted, 0, spent=spent)


def test_a_spent_window_is_refused_from_memory_until_it_ends() -> None:
    reserver = ExplainingReserver()
    reserver.known.add("a")
    reserver.new_window_resets = True
    budget = RateBudget(reserver)
    verdicts = [budget.check("a", limit=5, window_seconds=60, now=1.0) for _ in range(8)]
    assert verdicts == [Verdict.ALLOWED] * 5 + [Verdict.LIMITED] * 3
    calls = reserver.calls
    assert budget.check("a", limit=5, window_seconds=60, now=59.0) is Verdict.LIMITED
    assert reserver.calls == calls
    assert budget.check("a", limit=5, window_seconds=60, now=60.0) is Verdict.ALLOWED
    assert reserver.calls == calls + 1


def test_an_unknown_connection_is_never_remembered_as_rate_limited() -> None:
    reserver = ExplainingReserver()
    budget = RateBudget(reserver)
    for _ in range(3):
        assert budget.check("ghost", limit=5, window_seconds=60, now=1.0) is Verdict.REFUSED
    assert reserver.calls == 3


def test_a_store_that_cannot_say_why_leaves_the_refusal_to_the_caller() -> None:
    reserver = FakeReserver()
    reserver.known.add("a")
    budget = RateBudget(reserver)
    verdicts = [budget.check("a", limit=2, window_seconds=60, now=1.0) for _ in range(4)]
    assert verdicts == [Verdict.ALLOWED] * 2 + [Verdict.REFUSED] * 2


def _wants(limit: int, messages: int, chunk: int | None = None) -> list[int]:
    """What one container asks the table for while one connection sends ``messages``."""
    reserver = FakeReserver()
    reserver.known.add("a")
    budget = RateBudget(reserver)
    for _ in range(messages):
        assert budget.take("a", limit=limit, window_seconds=60, now=5.0, chunk=chunk)
    return reserver.asked


def test_a_busy_connection_reserves_ever_larger_chunks_up_to_a_tenth_of_the_limit() -> None:
    asked = _wants(10_000, 1_000)
    assert asked == [10, 20, 40, 80, 160, 320, 640]
    assert max(_wants(1_000, 1_000)) == largest_chunk(1_000) == 100


def test_the_chunk_does_not_grow_under_a_small_limit_or_an_explicit_chunk() -> None:
    assert set(_wants(100, 100)) == {10}
    assert set(_wants(10**9, 100, chunk=10)) == {10}


def test_a_container_never_holds_more_unspent_than_it_already_spent_plus_one_chunk() -> None:
    limit = 10**6
    reserver = FakeReserver()
    reserver.known.add("a")
    budget = RateBudget(reserver)
    for spent in range(1, 5_000):
        assert budget.take("a", limit=limit, window_seconds=60, now=5.0)
        unspent = reserver.taken["a"] - spent
        assert unspent <= spent + default_chunk(limit)


def test_a_new_window_starts_again_from_the_default_chunk() -> None:
    reserver = FakeReserver()
    reserver.known.add("a")
    reserver.new_window_resets = True
    budget = RateBudget(reserver)
    for _ in range(100):
        budget.take("a", limit=10**6, window_seconds=60, now=5.0)
    budget.take("a", limit=10**6, window_seconds=60, now=65.0)
    assert reserver.asked[-1] == default_chunk(10**6)


@pytest.mark.parametrize(
    "call",
    [
        lambda b: b.take("a", limit=0, window_seconds=60, now=0.0),
        lambda b: b.take("a", limit=1, window_seconds=0, now=0.0),
        lambda b: b.take("a", limit=1, window_seconds=60, now=0.0, chunk=0),
    ],
)
def test_budget_rejects_nonsense(call: Callable[[RateBudget], Any]) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        call(RateBudget(FakeReserver()))


def test_default_chunk_is_a_tenth_of_the_limit_between_1_and_10() -> None:
    assert [default_chunk(n) for n in (1, 9, 10, 55, 100, 1_000_000)] == [1, 1, 1, 5, 10, 10]


def test_the_chunk_is_configurable_from_the_environment() -> None:
    from streamer_handlers._lambda.settings import SettingsError
    from streamer_handlers.deployment import Settings

    assert Settings.from_env({}).rate_limit_chunk is None
    assert Settings.from_env({"STREAMER_RATE_LIMIT_CHUNK": "5"}).rate_limit_chunk == 5
    for bad in ("0", "-1", "2.5", "many"):
        with pytest.raises(SettingsError, match="STREAMER_RATE_LIMIT_CHUNK"):
            Settings.from_env({"STREAMER_RATE_LIMIT_CHUNK": bad})
