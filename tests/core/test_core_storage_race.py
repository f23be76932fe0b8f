"""Real races between threads: DynamoDB's conditional writes must pick exactly one winner."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from streamer_core.protocol import RequestStatus
from streamer_core.storage import IllegalTransitionError, RequestKey, RequestStore

if TYPE_CHECKING:
    from conftest import AtomicCallsClient, FakeClock

T = TypeVar("T")
TABLE = "streamer-test-requests"
ROUNDS = 60
LEASE = 30.0


def _race(*contenders: Callable[[], T]) -> list[T]:
    """Release every contender at the same instant and collect what each one got."""
    barrier = threading.Barrier(len(contenders))
    results: list[T] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(attempt: Callable[[], T]) -> None:
        barrier.wait()
        try:
            outcome = attempt()
        except BaseException as exc:  # a thread's failure must fail the test, not vanish
            with lock:
                errors.append(exc)
            return
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run, args=(attempt,)) for attempt in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return results


def test_two_workers_claiming_one_request_never_both_win(
    atomic_dynamodb: AtomicCallsClient, clock: FakeClock
) -> None:
    store = RequestStore(atomic_dynamodb, TABLE, clock=clock)
    for round_number in range(ROUNDS):
        key = RequestKey("acme", "alice", f"race-{round_number}")
        store.create(key, "generate_report", {"n": round_number}, connection_id=None)

        claims = _race(*[lambda key=key: store.claim(key, lease_seconds=LEASE)] * 2)

        winners = [claim for claim in claims if claim is not None]
        assert len(claims) == 2
        assert len(winners) == 1, f"round {round_number}: {len(winners)} winners"
        assert winners[0].attempts == 1
        assert store.get(key).attempts == 1  # type: ignore[union-attr]


def test_two_workers_reclaiming_an_abandoned_request_never_both_win(
    atomic_dynamodb: AtomicCallsClient, clock: FakeClock
) -> None:
    store = RequestStore(atomic_dynamodb, TABLE, clock=clock)
    keys = [RequestKey("acme", "alice", f"abandoned-{i}") for i in range(ROUNDS)]
    for key in keys:
        store.create(key, "generate_report", {}, connection_id=None)
        assert store.claim(key, lease_seconds=LEASE) is not None
    clock.advance(LEASE + 1)  # every first worker has died

    for key in keys:
        claims = _race(*[lambda key=key: store.claim(key, lease_seconds=LEASE)] * 2)
        winners = [claim for claim in claims if claim is not None]
        assert len(winners) == 1
        assert winners[0].attempts == 2


def test_concurrent_creates_of_one_id_create_it_once(
    atomic_dynamodb: AtomicCallsClient, clock: FakeClock
) -> None:
    store = RequestStore(atomic_dynamodb, TABLE, clock=clock)
    for round_number in range(ROUNDS // 2):
        key = RequestKey("acme", "alice", f"dup-{round_number}")
        outcomes = _race(
            *[lambda key=key: store.create(key, "echo", {"same": True}, connection_id=None)] * 3
        )
        assert sorted(created for _record, created in outcomes) == [False, False, True]
        first = outcomes[0][0]
        assert all(record == first for record, _created in outcomes)


def test_completion_and_cancellation_racing_leave_one_consistent_end(
    atomic_dynamodb: AtomicCallsClient, clock: FakeClock
) -> None:
    store = RequestStore(atomic_dynamodb, TABLE, clock=clock)
    for round_number in range(ROUNDS // 2):
        key = RequestKey("acme", "alice", f"end-{round_number}")
        store.create(key, "generate_report", {}, connection_id=None)
        store.claim(key, lease_seconds=LEASE)

        def finish(key: RequestKey = key) -> str:
            try:
                store.complete(key, "done")
            except IllegalTransitionError:
                return "complete refused"
            return "completed"

        def stop(key: RequestKey = key) -> str:
            try:
                store.mark_cancelled(key)
            except IllegalTransitionError:
                return "cancel refused"
            return "cancelled"

        outcomes = sorted(_race(finish, stop))
        final = store.get(key)
        assert final is not None
        if final.status is RequestStatus.COMPLETED:
            assert outcomes == ["cancel refused", "completed"]
            assert final.result == "done"
        else:
            assert final.status is RequestStatus.CANCELLED
            assert outcomes == ["cancelled", "complete refused"]
            assert final.result is None


def test_a_cancel_racing_a_claim_never_loses_the_cancel(
    atomic_dynamodb: AtomicCallsClient, clock: FakeClock
) -> None:
    store = RequestStore(atomic_dynamodb, TABLE, clock=clock)
    for round_number in range(ROUNDS // 2):
        key = RequestKey("acme", "alice", f"cancel-{round_number}")
        store.create(key, "generate_report", {}, connection_id=None)

        _race(
            lambda key=key: store.claim(key, lease_seconds=LEASE),
            lambda key=key: store.request_cancel(key),
        )

        final = store.get(key)
        assert final is not None
        assert final.cancel_requested is True
        assert final.status in (RequestStatus.CANCELLED, RequestStatus.PROCESSING)
        assert final.attempts == (1 if final.status is RequestStatus.PROCESSING else 0)
