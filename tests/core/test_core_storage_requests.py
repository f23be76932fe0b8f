"""RequestStore against moto: idempotent creation, the state machine, leases, progress, TTL."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streamer_core.protocol import (
    MAX_FRAME_BYTES,
    ErrorCode,
    ErrorInfo,
    ProgressState,
    RequestSnapshot,
    RequestStatus,
)
from streamer_core.storage import (
    REQUESTS,
    ConflictError,
    Connection,
    IllegalTransitionError,
    ItemTooLargeError,
    RequestKey,
    RequestRecord,
    RequestStore,
    Storage,
)

if TYPE_CHECKING:
    from conftest import FakeClock

KEY = RequestKey("acme", "alice", "req-1")
LEASE = 30.0
TTL = 3600  # the request_store fixture's ttl_seconds


def _create(store: RequestStore, key: RequestKey = KEY, **payload: Any) -> RequestRecord:
    record, created = store.create(
        key, "generate_report", payload or {"n": 1}, connection_id="c1", metadata={"trace": "t"}
    )
    assert created
    return record


def _progress(seq: int, percentage: float = 50.0, **metadata: Any) -> ProgressState:
    return ProgressState(percentage=percentage, message=f"step {seq}", metadata=metadata, seq=seq)


# ---------------------------------------------------------------- create / get


def test_create_stores_a_queued_request(request_store: RequestStore, clock: FakeClock) -> None:
    record, created = request_store.create(
        KEY, "generate_report", {"n": 1, "tags": ["a"]}, connection_id="c1", metadata={"k": "v"}
    )
    assert created is True
    assert record.key == KEY
    assert record.status is RequestStatus.QUEUED
    assert record.payload == {"n": 1, "tags": ["a"]}
    assert record.connection_id == "c1"
    assert record.metadata == {"k": "v"}
    assert record.created_at == record.updated_at == int(clock() * 1000)
    assert record.expires_at == int(clock()) + TTL
    assert record.attempts == 0
    assert record.lease_until is None
    assert record.cancel_requested is False
    assert (record.progress, record.result, record.error) == (None, None, None)
    assert request_store.get(KEY) == record


def test_create_without_connection_or_metadata(request_store: RequestStore) -> None:
    record, _ = request_store.create(KEY, "echo", {}, connection_id=None)
    assert record.connection_id is None
    assert record.metadata == {}
    assert request_store.get(KEY) == record


@pytest.mark.parametrize(
    "metadata",
    [{"": "x"}, {"a.b": "1", "$weird key": "", "é": "ü"}],
    ids=["empty-key", "odd-keys"],
)
def test_any_string_metadata_survives_dynamodb(
    request_store: RequestStore, metadata: dict[str, str]
) -> None:
    record, _ = request_store.create(KEY, "echo", {}, connection_id=None, metadata=metadata)
    assert record.metadata == metadata
    assert request_store.get(KEY) == record


def test_metadata_stored_as_a_map_is_still_read(request_store: RequestStore, dynamodb: Any) -> None:
    request_store.create(KEY, "echo", {}, connection_id=None)
    dynamodb.update_item(
        TableName=REQUESTS.physical_name("test"),  # the dynamodb fixture's environment
        Key={"owner": {"S": KEY.owner}, "request_id": {"S": KEY.request_id}},
        UpdateExpression="SET metadata = :m",
        ExpressionAttributeValues={":m": {"M": {"trace": {"S": "t"}}}},
    )
    record = request_store.get(KEY)
    assert record is not None
    assert record.metadata == {"trace": "t"}


def test_create_is_idempotent_for_the_same_work(
    request_store: RequestStore, clock: FakeClock
) -> None:
    first = _create(request_store, a=1, b={"x": [1, 2]})
    clock.advance(5)
    again, created = request_store.create(
        KEY, "generate_report", {"b": {"x": [1, 2]}, "a": 1}, connection_id="c2"
    )
    assert created is False
    assert again.followers == {"c1", "c2"}
    assert dataclasses.replace(again, followers=first.followers) == first
    assert request_store.get(KEY) == again


def test_a_new_request_is_followed_by_the_connection_that_sent_it(
    request_store: RequestStore,
) -> None:
    record = _create(request_store)
    assert record.followers == {"c1"}
    assert request_store.get(KEY) == record
    unfollowed, _ = request_store.create(
        RequestKey("acme", "alice", "req-2"), "echo", {}, connection_id=None
    )
    assert unfollowed.followers == frozenset()


def test_a_resend_of_a_finished_request_follows_nothing(request_store: RequestStore) -> None:
    _create(request_store)
    request_store.claim(KEY, lease_seconds=LEASE)
    request_store.complete(KEY, {"ok": True})
    again, created = request_store.create(KEY, "generate_report", {"n": 1}, connection_id="c2")
    assert created is False
    assert again.status is RequestStatus.COMPLETED
    assert again.followers == {"c1"}
    assert request_store.get(KEY) == again


def test_a_conflicting_resend_follows_nothing(request_store: RequestStore) -> None:
    _create(request_store)
    with pytest.raises(ConflictError):
        request_store.create(KEY, "generate_report", {"n": 2}, connection_id="c2")
    assert request_store.get(KEY).followers == {"c1"}  # type: ignore[union-attr]


def test_following_a_running_request_reads_it_in_the_same_write(
    request_store: RequestStore, clock: FakeClock
) -> None:
    created = _create(request_store)
    clock.advance(3)
    record, followed = request_store.follow(KEY, "c2")
    assert followed is True
    assert record is not None
    assert record.followers == {"c1", "c2"}
    assert record.updated_at == created.updated_at  # a follower is not a change of state
    request_store.claim(KEY, lease_seconds=LEASE)
    progressed = request_store.record_progress(KEY, _progress(1))
    assert progressed is not None
    assert progressed.followers == {"c1", "c2"}


def test_a_finished_or_absent_request_is_read_but_not_followed(
    request_store: RequestStore,
) -> None:
    assert request_store.follow(KEY, "c2") == (None, False)
    assert request_store.get(KEY) is None  # following never creates the request
    _create(request_store)
    request_store.claim(KEY, lease_seconds=LEASE)
    request_store.fail(KEY, ErrorInfo(code=ErrorCode.INTERNAL_ERROR, message="x"))
    record, followed = request_store.follow(KEY, "c2")
    assert followed is False
    assert record is not None
    assert record.status is RequestStatus.FAILED
    assert record.followers == {"c1"}


def test_followers_found_gone_leave_with_the_next_progress(request_store: RequestStore) -> None:
    _create(request_store)
    request_store.follow(KEY, "c2")
    request_store.follow(KEY, "c3")
    request_store.claim(KEY, lease_seconds=LEASE)
    record = request_store.record_progress(KEY, _progress(1), drop={"c1", "c3", "never"})
    assert record is not None
    assert record.followers == {"c2"}
    record = request_store.record_progress(KEY, _progress(2), drop={"c2"})
    assert record is not None
    assert record.followers == frozenset()
    finished = request_store.complete(KEY, "done")
    assert finished.followers == frozenset()


@pytest.mark.parametrize(
    ("action", "payload"),
    [("generate_report", {"n": 2}), ("other_action", {"n": 1}), ("generate_report", {})],
)
def test_reusing_an_id_for_other_work_is_a_conflict(
    request_store: RequestStore, action: str, payload: dict[str, Any]
) -> None:
    original = _create(request_store, n=1)
    with pytest.raises(ConflictError) as caught:
        request_store.create(KEY, action, payload, connection_id="c1")
    assert caught.value.request_id == KEY.request_id
    assert request_store.get(KEY) == original


def test_request_ids_are_scoped_to_their_owner(request_store: RequestStore) -> None:
    _create(request_store, n=1)
    other_user = RequestKey("acme", "bob", KEY.request_id)
    other_tenant = RequestKey("globex", "alice", KEY.request_id)
    assert request_store.get(other_user) is None
    assert request_store.create(other_user, "x", {"n": 9}, connection_id=None)[1] is True
    assert request_store.create(other_tenant, "y", {}, connection_id=None)[1] is True
    assert request_store.get(KEY).action == "generate_report"  # type: ignore[union-attr]


def test_an_expired_request_is_absent_and_its_id_can_be_reused(
    request_store: RequestStore, clock: FakeClock
) -> None:
    _create(request_store, n=1)
    clock.advance(TTL - 1)
    assert request_store.get(KEY) is not None
    clock.advance(1)
    assert request_store.get(KEY) is None
    assert request_store.claim(KEY, lease_seconds=LEASE) is None
    record, created = request_store.create(KEY, "other", {"n": 2}, connection_id=None)
    assert created is True
    assert record.action == "other"
    assert record.expires_at == int(clock()) + TTL


def test_an_expired_leftover_is_replaced_with_none_of_its_followers(
    request_store: RequestStore, clock: FakeClock
) -> None:
    _create(request_store, n=1)
    clock.advance(TTL)
    record, created = request_store.create(KEY, "generate_report", {"n": 1}, connection_id="c9")
    assert created is True
    assert record.followers == {"c9"}
    assert record.status is RequestStatus.QUEUED
    assert request_store.get(KEY) == record


def test_the_default_ttl_is_a_week(dynamodb: Any, clock: FakeClock) -> None:
    store = RequestStore(dynamodb, "streamer-test-requests", clock=clock)
    record, _ = store.create(KEY, "echo", {}, connection_id=None)
    assert record.expires_at == int(clock()) + 7 * 86400


def test_oversized_payloads_are_refused_before_writing(request_store: RequestStore) -> None:
    with pytest.raises(ItemTooLargeError):
        request_store.create(KEY, "echo", {"blob": "x" * MAX_FRAME_BYTES}, connection_id=None)
    with pytest.raises(ItemTooLargeError):
        request_store.create(
            KEY,
            "echo",
            {"blob": "x" * (MAX_FRAME_BYTES // 2)},
            connection_id=None,
            metadata={"m": "y" * (MAX_FRAME_BYTES // 2)},
        )
    assert request_store.get(KEY) is None


# ---------------------------------------------------------------- the state machine

State = str  # a RequestStatus value, "absent" or "expired"
STATES: tuple[State, ...] = (*(s.value for s in RequestStatus), "absent", "expired")


def _bring_to(store: RequestStore, clock: FakeClock, state: State) -> None:
    if state == "absent":
        return
    _create(store)
    if state == "expired":
        clock.advance(TTL)
    elif state in ("PROCESSING", "COMPLETED"):
        assert store.claim(KEY, lease_seconds=LEASE) is not None
        if state == "COMPLETED":
            store.complete(KEY, {"ok": True})
    elif state == "FAILED":
        store.fail(KEY, ErrorInfo(code=ErrorCode.INTERNAL_ERROR, message="boom"))
    elif state == "CANCELLED":
        store.request_cancel(KEY)


def _current(state: State) -> RequestStatus | None:
    return None if state in ("absent", "expired") else RequestStatus(state)


TRANSITIONS: dict[
    str, tuple[Callable[[RequestStore], RequestRecord], RequestStatus, set[State]]
] = {
    "complete": (
        lambda s: s.complete(KEY, {"rows": 3}),
        RequestStatus.COMPLETED,
        {"PROCESSING"},
    ),
    "fail": (
        lambda s: s.fail(KEY, ErrorInfo(code=ErrorCode.TIMEOUT, message="too slow")),
        RequestStatus.FAILED,
        {"QUEUED", "PROCESSING"},
    ),
    "mark_cancelled": (lambda s: s.mark_cancelled(KEY), RequestStatus.CANCELLED, {"PROCESSING"}),
}


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("operation", sorted(TRANSITIONS))
def test_every_transition_is_allowed_or_refused_with_the_current_status(
    request_store: RequestStore, clock: FakeClock, operation: str, state: State
) -> None:
    apply, target, legal_from = TRANSITIONS[operation]
    _bring_to(request_store, clock, state)
    before = request_store.get(KEY)
    clock.advance(1)

    if state in legal_from:
        record = apply(request_store)
        assert record.status is target
        assert record.lease_until is None
        assert record.updated_at == int(clock() * 1000)
        assert request_store.get(KEY) == record
    else:
        with pytest.raises(IllegalTransitionError) as caught:
            apply(request_store)
        assert caught.value.current == _current(state)
        assert caught.value.target == target.value
        assert request_store.get(KEY) == before


@pytest.mark.parametrize("state", STATES)
def test_claim_takes_only_queued_requests(
    request_store: RequestStore, clock: FakeClock, state: State
) -> None:
    _bring_to(request_store, clock, state)
    before = request_store.get(KEY)
    record = request_store.claim(KEY, lease_seconds=LEASE)
    if state == "QUEUED":
        assert record is not None
        assert record.status is RequestStatus.PROCESSING
        assert record.attempts == 1
        assert record.lease_until == int((clock() + LEASE) * 1000)
    else:
        assert record is None
        assert request_store.get(KEY) == before


@pytest.mark.parametrize("state", STATES)
def test_request_cancel_from_every_state(
    request_store: RequestStore, clock: FakeClock, state: State
) -> None:
    _bring_to(request_store, clock, state)
    before = request_store.get(KEY)
    if state in ("absent", "expired"):
        with pytest.raises(IllegalTransitionError) as caught:
            request_store.request_cancel(KEY)
        assert caught.value.current is None
        return
    record = request_store.request_cancel(KEY)
    assert request_store.get(KEY) == record
    if state == "QUEUED":
        assert record.status is RequestStatus.CANCELLED
    elif state == "PROCESSING":
        assert record.status is RequestStatus.PROCESSING
        assert record.cancel_requested is True
    else:
        assert record == before


def test_a_cancelled_queued_request_is_never_claimed(request_store: RequestStore) -> None:
    _create(request_store)
    request_store.request_cancel(KEY)
    assert request_store.claim(KEY, lease_seconds=LEASE) is None
    assert request_store.get(KEY).status is RequestStatus.CANCELLED  # type: ignore[union-attr]


def test_a_running_request_stops_through_cancel_requested(request_store: RequestStore) -> None:
    _create(request_store)
    request_store.claim(KEY, lease_seconds=LEASE)
    assert request_store.record_progress(KEY, _progress(1)).cancel_requested is False  # type: ignore[union-attr]
    request_store.request_cancel(KEY)
    seen = request_store.record_progress(KEY, _progress(2))
    assert seen is not None
    assert seen.cancel_requested is True
    cancelled = request_store.mark_cancelled(KEY)
    assert cancelled.status is RequestStatus.CANCELLED


# ---------------------------------------------------------------- leases


def test_a_live_lease_keeps_other_workers_out_until_it_runs_out(
    request_store: RequestStore, clock: FakeClock
) -> None:
    _create(request_store)
    first = request_store.claim(KEY, lease_seconds=LEASE)
    assert first is not None
    clock.advance(LEASE)
    assert request_store.claim(KEY, lease_seconds=LEASE) is None  # lease ends, not yet passed
    clock.advance(0.001)

    second = request_store.claim(KEY, lease_seconds=LEASE)

    assert second is not None
    assert second.status is RequestStatus.PROCESSING
    assert second.attempts == 2
    assert second.lease_until == int((clock() + LEASE) * 1000)
    assert request_store.claim(KEY, lease_seconds=LEASE) is None


def test_after_a_reclaim_only_one_worker_completes(
    request_store: RequestStore, clock: FakeClock
) -> None:
    _create(request_store)
    request_store.claim(KEY, lease_seconds=LEASE)
    clock.advance(LEASE + 1)
    request_store.claim(KEY, lease_seconds=LEASE)
    request_store.complete(KEY, "from the second worker")
    with pytest.raises(IllegalTransitionError) as caught:
        request_store.complete(KEY, "from the first worker")
    assert caught.value.current is RequestStatus.COMPLETED
    assert request_store.get(KEY).result == "from the second worker"  # type: ignore[union-attr]


def test_a_finished_request_is_never_reclaimed(
    request_store: RequestStore, clock: FakeClock
) -> None:
    _create(request_store)
    request_store.claim(KEY, lease_seconds=LEASE)
    request_store.complete(KEY, None)
    clock.advance(LEASE * 10)
    assert request_store.claim(KEY, lease_seconds=LEASE) is None


def test_a_lease_must_be_positive(request_store: RequestStore) -> None:
    _create(request_store)
    with pytest.raises(ValueError, match="lease_seconds"):
        request_store.claim(KEY, lease_seconds=0)


# ---------------------------------------------------------------- progress, result, error


def test_progress_is_kept_only_while_processing_and_only_moving_forward(
    request_store: RequestStore, clock: FakeClock
) -> None:
    _create(request_store)
    assert request_store.record_progress(KEY, _progress(1)) is None  # still QUEUED
    request_store.claim(KEY, lease_seconds=LEASE)

    clock.advance(1)
    first = request_store.record_progress(KEY, _progress(1, 10.5, rows=3))
    assert first is not None
    assert first.progress == _progress(1, 10.5, rows=3)
    assert first.updated_at == int(clock() * 1000)
    assert request_store.record_progress(KEY, _progress(1, 20)) is None
    assert request_store.record_progress(KEY, _progress(3, 30)) is not None
    assert request_store.record_progress(KEY, _progress(2, 25)) is None
    assert request_store.get(KEY).progress == _progress(3, 30)  # type: ignore[union-attr]

    request_store.complete(KEY, 1)
    assert request_store.record_progress(KEY, _progress(4)) is None
    assert request_store.get(KEY).progress == _progress(3, 30)  # type: ignore[union-attr]


def test_progress_of_an_absent_request_is_ignored(request_store: RequestStore) -> None:
    assert request_store.record_progress(KEY, _progress(1)) is None
    assert request_store.get(KEY) is None


def test_result_and_snapshot(request_store: RequestStore, clock: FakeClock) -> None:
    created = _create(request_store)
    request_store.claim(KEY, lease_seconds=LEASE)
    request_store.record_progress(KEY, _progress(7, 99.5))
    clock.advance(2)
    result = {"rows": [1, 2.5, None, "é"], "nested": {"deep": [[{}]]}, "big": 10**40}

    done = request_store.complete(KEY, result)

    assert done.result == result
    assert done.snapshot() == RequestSnapshot(
        request_id=KEY.request_id,
        action="generate_report",
        status=RequestStatus.COMPLETED,
        progress=_progress(7, 99.5),
        result=result,
        error=None,
        created_at=created.created_at,
        updated_at=int(clock() * 1000),
    )
    assert request_store.get(KEY) == done


def test_error_is_stored_with_its_details(request_store: RequestStore) -> None:
    _create(request_store)
    error = ErrorInfo(code=ErrorCode.TIMEOUT, message="took too long", details={"after_s": 900})
    failed = request_store.fail(KEY, error)
    assert failed.error == error
    assert failed.snapshot().error == error
    assert request_store.get(KEY).error == error  # type: ignore[union-attr]


def test_a_result_too_large_to_deliver_is_refused_and_the_request_can_still_fail(
    request_store: RequestStore,
) -> None:
    _create(request_store)
    request_store.claim(KEY, lease_seconds=LEASE)
    with pytest.raises(ItemTooLargeError) as caught:
        request_store.complete(KEY, "x" * MAX_FRAME_BYTES)
    assert caught.value.field == "result"
    assert request_store.get(KEY).status is RequestStatus.PROCESSING  # type: ignore[union-attr]
    failed = request_store.fail(KEY, ErrorInfo(code=ErrorCode.INTERNAL_ERROR, message="too big"))
    assert failed.status is RequestStatus.FAILED


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3)
    ),
    max_leaves=15,
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=40)
@given(payload=st.dictionaries(st.text(), _json, max_size=4), result=_json)
def test_any_json_payload_and_result_survive_dynamodb(
    request_store: RequestStore, payload: dict[str, Any], result: Any
) -> None:
    key = RequestKey("acme", "alice", f"r-{abs(hash((repr(payload), repr(result))))}")
    record, _ = request_store.create(key, "echo", payload, connection_id=None)
    if record.status is RequestStatus.QUEUED:
        request_store.claim(key, lease_seconds=LEASE)
        request_store.complete(key, result)
    stored = request_store.get(key)
    assert stored is not None
    assert stored.payload == payload
    assert stored.result == result


# ---------------------------------------------------------------- keys and the facade


def test_request_key_round_trips_as_an_sqs_body() -> None:
    assert KEY.owner == "acme#alice"
    assert RequestKey.from_json(KEY.to_json()) == KEY


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        '{"tenant_id": "a", "user_id": "b"}',
        '{"tenant_id": "a", "user_id": "b", "request_id": 3}',
        '{"tenant_id": "a", "user_id": "b", "request_id": ""}',
        '{"tenant_id": "a", "user_id": "b", "request_id": "r", "extra": "x"}',
    ],
)
def test_a_malformed_sqs_body_is_refused(body: str) -> None:
    with pytest.raises(ValueError, match="request key"):
        RequestKey.from_json(body)


def test_storage_names_tables_after_the_environment(dynamodb: Any, clock: FakeClock) -> None:
    storage = Storage(dynamodb, env="test", clock=clock)
    connection = Connection("c1", "alice", "acme", frozenset(), 0, int(clock()) + 60)
    storage.connections.put(connection)
    assert storage.connections.get("c1") == connection
    assert storage.subscriptions.subscribe("c1", "acme", "t", expires_at=int(clock()) + 60)
    assert storage.requests.create(KEY, "echo", {}, connection_id="c1")[1] is True
    assert dynamodb.get_item(
        TableName="streamer-test-requests",
        Key={"owner": {"S": "acme#alice"}, "request_id": {"S": "req-1"}},
    )["Item"]["status"] == {"S": "QUEUED"}


def test_storage_prefers_explicit_table_names(dynamodb: Any, clock: FakeClock) -> None:
    dynamodb.create_table(
        **{**_requests_kwargs(), "TableName": "custom-requests"},
    )
    storage = Storage(
        dynamodb,
        connections_table="streamer-test-connections",
        subscriptions_table="streamer-test-subscriptions",
        requests_table="custom-requests",
        clock=clock,
    )
    storage.requests.create(KEY, "echo", {}, connection_id=None)
    assert "Item" in dynamodb.get_item(
        TableName="custom-requests",
        Key={"owner": {"S": "acme#alice"}, "request_id": {"S": "req-1"}},
    )


def _requests_kwargs() -> dict[str, Any]:
    from streamer_core.storage import REQUESTS

    return REQUESTS.create_table_kwargs("unused")


def test_storage_needs_an_env_or_every_table_name(dynamodb: Any) -> None:
    with pytest.raises(ValueError, match="connections"):
        Storage(dynamodb)
    with pytest.raises(ValueError, match="requests"):
        Storage(dynamodb, connections_table="a", subscriptions_table="b")


def test_release_lets_the_next_delivery_reclaim_at_once(
    request_store: RequestStore, clock: FakeClock
) -> None:
    _create(request_store)
    claimed = request_store.claim(KEY, lease_seconds=900)
    assert claimed is not None
    assert request_store.claim(KEY, lease_seconds=900) is None

    released = request_store.release(KEY, attempts=claimed.attempts)

    assert released is not None
    assert released.status is RequestStatus.PROCESSING
    clock.advance(0.001)
    again = request_store.claim(KEY, lease_seconds=900)
    assert again is not None
    assert again.attempts == claimed.attempts + 1


def test_release_never_touches_a_later_attempts_claim(
    request_store: RequestStore, clock: FakeClock
) -> None:
    _create(request_store)
    first = request_store.claim(KEY, lease_seconds=10)
    assert first is not None
    clock.advance(11)
    second = request_store.claim(KEY, lease_seconds=900)
    assert second is not None

    assert request_store.release(KEY, attempts=first.attempts) is None
    assert request_store.claim(KEY, lease_seconds=900) is None
    current = request_store.get(KEY)
    assert current is not None
    assert current.lease_until == second.lease_until


def test_release_of_a_finished_request_changes_nothing(request_store: RequestStore) -> None:
    _create(request_store)
    claimed = request_store.claim(KEY, lease_seconds=900)
    assert claimed is not None
    request_store.complete(KEY, {"ok": True})

    assert request_store.release(KEY, attempts=claimed.attempts) is None
    current = request_store.get(KEY)
    assert current is not None
    assert current.status is RequestStatus.COMPLETED
