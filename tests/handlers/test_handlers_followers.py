"""Who hears about a request: its followers, kept on the request and joined in one write."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def no_index(stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The subscriptions index cannot be read: a request's audience must not need it."""

    def refuse(*args: Any, **kwargs: Any) -> list[str]:
        raise AssertionError("a request's followers were looked up in the subscriptions index")

    subscriptions = stack.runtime.storage.subscriptions
    monkeypatch.setattr(subscriptions, "all_subscribers", refuse)
    monkeypatch.setattr(subscriptions, "subscribers", refuse)


def _followers(stack, request_id: str) -> set[str]:
    record = stack.runtime.storage.requests.get(stack.request_key(request_id))
    assert record is not None
    return set(record.followers)


def test_the_submitter_gets_progress_and_result_without_any_index(stack, no_index):
    connection = stack.connect()
    stack.send(connection, {"action": "job", "id": "fast", "payload": {"steps": 2}})
    assert stack.drain() == {"batchItemFailures": []}
    frames = stack.frames(connection)
    assert [f["type"] for f in frames] == ["progress", "progress", "complete"]
    assert {f["request_id"] for f in frames} == {"fast"}


def test_the_submitter_hears_of_a_failure_without_any_index(stack, no_index):
    connection = stack.connect()
    stack.send(connection, {"action": "job.fails", "id": "bad"})
    assert stack.drain() == {"batchItemFailures": []}
    assert [f["code"] for f in stack.frames(connection, "error")] == ["VALIDATION_ERROR"]


def test_the_submitter_hears_of_a_cancel_without_any_index(stack, no_index):
    connection = stack.connect()
    stack.send(connection, {"action": "job", "id": "stop"})
    stack.send(connection, {"action": "cancel", "payload": {"request_id": "stop"}})
    assert [f["code"] for f in stack.frames(connection, "error")] == ["CANCELLED"]


def test_a_connection_that_submitted_and_asked_status_gets_each_frame_once(stack):
    connection = stack.connect()
    stack.send(connection, {"action": "job", "id": "once", "payload": {"steps": 1}})
    stack.send(connection, {"action": "status", "payload": {"request_id": "once"}})
    stack.drain()
    assert [f["type"] for f in stack.frames(connection)] == ["progress", "complete"]


def test_a_submission_writes_no_subscription(stack):
    connection = stack.connect()
    stack.send(connection, {"action": "job", "id": "mine"})
    assert _followers(stack, "mine") == {connection}
    assert stack.runtime.storage.subscriptions.topics_of(connection) == []


def test_status_joins_the_followers_in_the_write_that_reads_the_request(stack, monkeypatch):
    owner = stack.connect()
    stack.send(owner, {"action": "job", "id": "watched"})
    other = stack.connect()
    requests = stack.runtime.storage.requests
    monkeypatch.setattr(requests, "get", lambda *a, **k: pytest.fail("status read separately"))
    reply = stack.send(other, {"action": "status", "payload": {"request_id": "watched"}})
    monkeypatch.undo()
    assert reply["snapshot"]["status"] == "QUEUED"
    assert _followers(stack, "watched") == {owner, other}
    stack.drain()
    for connection in (owner, other):
        assert [f["type"] for f in stack.frames(connection)][-1] == "complete"


def test_a_resent_request_joins_its_followers(stack):
    first = stack.connect()
    frame = {"action": "job", "id": "again", "payload": {"steps": 1}}
    stack.send(first, frame)
    second = stack.connect()
    assert stack.send(second, frame)["status"] == "QUEUED"
    assert _followers(stack, "again") == {first, second}
    stack.drain()
    for connection in (first, second):
        assert [f["type"] for f in stack.frames(connection)] == ["progress", "complete"]


def test_status_of_an_absent_or_finished_request_follows_nothing(stack):
    connection = stack.connect()
    missing = stack.send(connection, {"action": "status", "payload": {"request_id": "none"}})
    assert missing["code"] == "NOT_FOUND"
    assert stack.runtime.storage.requests.get(stack.request_key("none")) is None
    owner = stack.connect()
    stack.send(owner, {"action": "job", "id": "done", "payload": {"steps": 1}})
    stack.drain()
    done = stack.send(connection, {"action": "status", "payload": {"request_id": "done"}})
    assert done["snapshot"]["status"] == "COMPLETED"
    assert _followers(stack, "done") == {owner}
    assert stack.runtime.storage.subscriptions.topics_of(connection) == []


def test_a_conflicting_resend_does_not_follow_the_other_request(stack):
    first = stack.connect()
    stack.send(first, {"action": "job", "id": "mine", "payload": {"steps": 1}})
    second = stack.connect()
    reply = stack.send(second, {"action": "job", "id": "mine", "payload": {"steps": 2}})
    assert reply["code"] == "CONFLICT"
    assert _followers(stack, "mine") == {first}


def test_another_users_status_neither_reads_nor_follows_the_request(stack):
    owner = stack.connect("alice", "acme")
    stack.send(owner, {"action": "job", "id": "private"})
    for sub, tenant in (("bob", "acme"), ("alice", "globex")):
        intruder = stack.connect(sub, tenant)
        reply = stack.send(intruder, {"action": "status", "payload": {"request_id": "private"}})
        assert reply["code"] == "NOT_FOUND"
    assert _followers(stack, "private") == {owner}


def test_a_gone_follower_is_posted_to_once_and_leaves_the_request(stack):
    @stack.app.action("job.paced", asynchronous=True)
    def paced(request, progress):
        for step in range(1, 5):
            stack.clock.advance(1)  # a report a second: none is held back
            progress.report(step * 25)
        return "done"

    submitter = stack.connect()
    watcher = stack.connect()
    stack.send(submitter, {"action": "job.paced", "id": "long"})
    stack.send(watcher, {"action": "status", "payload": {"request_id": "long"}})
    stack.sender.gone.add(submitter)
    posted: list[str] = []
    send = stack.sender.send

    def counting(connection_ids, data):
        posted.extend(connection_ids)
        return send(connection_ids, data)

    stack.sender.send = counting  # type: ignore[method-assign]
    assert stack.drain() == {"batchItemFailures": []}
    assert posted.count(submitter) == 1
    assert posted.count(watcher) == 5
    assert [f["type"] for f in stack.frames(watcher)] == ["progress"] * 4 + ["complete"]
    assert _followers(stack, "long") == {watcher}
    assert stack.runtime.storage.connections.get(submitter) is None
