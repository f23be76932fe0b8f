"""Who hears about a request: never nobody, whatever the subscriptions index lags behind."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def index_lags(stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The subscriptions index has not caught up yet: it lists nobody (DynamoDB GSIs lag)."""
    monkeypatch.setattr(
        stack.runtime.storage.subscriptions, "all_subscribers", lambda tenant, topic: []
    )


def test_the_submitter_gets_progress_and_result_before_the_index_lists_it(stack, index_lags):
    connection = stack.connect()
    stack.send(connection, {"action": "job", "id": "fast", "payload": {"steps": 2}})
    assert stack.drain() == {"batchItemFailures": []}
    frames = stack.frames(connection)
    assert [f["type"] for f in frames] == ["progress", "progress", "complete"]
    assert {f["request_id"] for f in frames} == {"fast"}


def test_the_submitter_hears_of_a_failure_before_the_index_lists_it(stack, index_lags):
    connection = stack.connect()
    stack.send(connection, {"action": "job.fails", "id": "bad"})
    assert stack.drain() == {"batchItemFailures": []}
    assert [f["code"] for f in stack.frames(connection, "error")] == ["VALIDATION_ERROR"]


def test_the_submitter_hears_of_a_cancel_before_the_index_lists_it(stack, index_lags):
    connection = stack.connect()
    stack.send(connection, {"action": "job", "id": "stop"})
    stack.send(connection, {"action": "cancel", "payload": {"request_id": "stop"}})
    assert [f["code"] for f in stack.frames(connection, "error")] == ["CANCELLED"]


def test_a_connection_both_stored_and_subscribed_gets_each_frame_once(stack):
    connection = stack.connect()
    stack.send(connection, {"action": "job", "id": "once", "payload": {"steps": 1}})
    stack.drain()
    assert [f["type"] for f in stack.frames(connection)] == ["progress", "complete"]


def _topics_when_called(stack, monkeypatch, store: Any, method: str, connection: str) -> list:
    seen: list[list[str]] = []
    original = getattr(store, method)

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(stack.runtime.storage.subscriptions.topics_of(connection))
        return original(*args, **kwargs)

    monkeypatch.setattr(store, method, spy)
    return seen


def test_status_follows_the_request_before_reading_it(stack, monkeypatch):
    owner = stack.connect()
    stack.send(owner, {"action": "job", "id": "watched"})
    other = stack.connect()
    requests = stack.runtime.storage.requests
    seen = _topics_when_called(stack, monkeypatch, requests, "get", other)
    reply = stack.send(other, {"action": "status", "payload": {"request_id": "watched"}})
    assert reply["snapshot"]["status"] == "QUEUED"
    assert seen == [["$request/watched/alice"]]
    assert stack.runtime.storage.subscriptions.topics_of(other) == ["$request/watched/alice"]


def test_a_resent_request_is_followed_before_its_record_is_read(stack, monkeypatch):
    first = stack.connect()
    frame = {"action": "job", "id": "again"}
    stack.send(first, frame)
    second = stack.connect()
    requests = stack.runtime.storage.requests
    seen = _topics_when_called(stack, monkeypatch, requests, "create", second)
    assert stack.send(second, frame)["status"] == "QUEUED"
    assert seen == [["$request/again/alice"]]


def test_status_of_an_absent_or_finished_request_leaves_no_subscription(stack):
    connection = stack.connect()
    missing = stack.send(connection, {"action": "status", "payload": {"request_id": "none"}})
    assert missing["code"] == "NOT_FOUND"
    assert stack.runtime.storage.subscriptions.topics_of(connection) == []
    owner = stack.connect()
    stack.send(owner, {"action": "job", "id": "done", "payload": {"steps": 1}})
    stack.drain()
    done = stack.send(connection, {"action": "status", "payload": {"request_id": "done"}})
    assert done["snapshot"]["status"] == "COMPLETED"
    assert stack.runtime.storage.subscriptions.topics_of(connection) == []


def test_a_conflicting_resend_does_not_follow_the_other_request(stack):
    first = stack.connect()
    stack.send(first, {"action": "job", "id": "mine", "payload": {"steps": 1}})
    second = stack.connect()
    reply = stack.send(second, {"action": "job", "id": "mine", "payload": {"steps": 2}})
    assert reply["code"] == "CONFLICT"
    assert stack.runtime.storage.subscriptions.topics_of(second) == []
