"""AWS requests per operation, counted exactly: what an operation costs on AWS.

Each operation runs through the real handlers on moto; botocore's hooks count the DynamoDB
and SQS calls, and the sender seam counts one management-API post per connection. The
figures are the minimum the design allows (see docs/costs.md for why each is what it is);
a change that adds a request to any of them fails here.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from streamer_handlers import publish

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.request_counter import (  # noqa: E402 - importable once the repository is on the path
    POST,
    CountingSender,
    RequestCounter,
)

UPDATE = "dynamodb.UpdateItem"
PAGE = 1000  # subscriptions.FULL_READ_PAGE_SIZE
DIRECT_MAX = 1000  # the fan-out's default direct limit
SHARD_SIZE = 100  # and its default shard size


@pytest.fixture
def counter(stack, aws: dict[str, Any]) -> Iterator[RequestCounter]:
    counter = RequestCounter()
    counter.watch(aws["dynamodb"], aws["sqs"])
    stack.reconfigure(sender=CountingSender(stack.sender, counter))
    try:
        yield counter
    finally:
        counter.unwatch(aws["dynamodb"], aws["sqs"])


def _connect(stack) -> str:
    """A connection whose rate-limit chunk is already reserved, as on a busy connection:
    the reservation is shared by the next messages and is counted on its own (echo)."""
    connection = stack.connect()
    assert stack.send(connection, {"action": "ping"})["type"] == "pong"
    return connection


def _posts(n: int) -> dict[str, int]:
    return {f"{POST[0]}.{POST[1]}": n} if n else {}


def test_connect_is_one_write(stack, counter):
    with counter.measure() as measured:
        stack.connect()
    assert measured.counts.calls() == {"dynamodb.PutItem": 1}


def test_disconnect_with_ten_subscriptions_is_a_query_a_batch_and_a_delete(stack, counter):
    connection = stack.connect()
    for index in range(10):
        stack.send(connection, {"action": "subscribe", "payload": {"topic": f"t{index}"}})
    with counter.measure() as measured:
        stack.disconnect(connection)
    assert measured.counts.calls() == {
        "dynamodb.Query": 1,
        "dynamodb.BatchWriteItem": 1,
        "dynamodb.DeleteItem": 1,
    }


def test_a_thousand_echoes_cost_only_the_rate_limit_reservations(stack, counter):
    stack.reconfigure(rate_limit=10_000)
    connection = stack.connect()
    stack.clock.now = 1_800_000_000.0  # the start of a window
    with counter.measure() as measured:
        for index in range(1000):
            reply = stack.send(connection, {"action": "echo", "id": f"e{index}"})
            assert reply["type"] == "response"
    # Chunks of 10, 20, 40, ... 640: seven reservations cover 1,000 messages.
    assert measured.counts.calls() == {UPDATE: 7}


def test_submitting_is_one_write_and_one_message(stack, counter):
    connection = _connect(stack)
    with counter.measure() as measured:
        ack = stack.send(connection, {"action": "job", "id": "s1"})
    assert ack["type"] == "acknowledgment"
    assert measured.counts.calls() == {UPDATE: 1, "sqs.SendMessage": 1}


def test_a_resubmission_is_one_write(stack, counter):
    connection = stack.connect()
    stack.send(connection, {"action": "job", "id": "s2"})
    other = _connect(stack)
    with counter.measure() as measured:
        assert stack.send(other, {"action": "job", "id": "s2"})["status"] == "QUEUED"
    assert measured.counts.calls() == {UPDATE: 1}


def test_each_progress_and_the_final_frame_are_one_write_and_a_post_per_follower(stack, counter):
    per_report: list[dict[str, int]] = []

    @stack.app.action("job.paced", asynchronous=True)
    def paced(request, progress):
        for step in range(1, 11):
            stack.clock.advance(1)  # a report a second: none is held back
            with counter.measure() as measured:
                progress.report(step * 10)
            per_report.append(measured.counts.calls())
        stack.hooks["returned"]()
        return "done"

    submitter = stack.connect()
    stack.send(submitter, {"action": "job.paced", "id": "p1"})
    watcher = stack.connect()
    stack.send(watcher, {"action": "status", "payload": {"request_id": "p1"}})
    measured_tail: list[Any] = []
    stack.hooks["returned"] = lambda: measured_tail.append(counter.snapshot())
    messages = stack.receive_messages()
    batch = [{"body": m["Body"], "message_id": m["MessageId"]} for m in messages]
    with counter.measure() as whole:
        assert stack.process(batch) == {"batchItemFailures": []}
    assert per_report == [{UPDATE: 1, **_posts(2)}] * 10
    final = counter.snapshot() - measured_tail[0]
    assert final.calls() == {UPDATE: 1, **_posts(2)}
    # The claim, ten progress writes and the completion: nothing else, no index query.
    assert whole.counts.calls() == {UPDATE: 12, **_posts(22)}
    assert [f["type"] for f in stack.frames(watcher)] == ["progress"] * 10 + ["complete"]


def test_a_failure_is_one_write_and_a_post_per_follower(stack, counter):
    connection = stack.connect()
    stack.send(connection, {"action": "job.fails", "id": "f1"})
    messages = stack.receive_messages()
    with counter.measure() as measured:
        stack.process([{"body": m["Body"]} for m in messages])
    # The claim, then the FAILED transition that returns the followers.
    assert measured.counts.calls() == {UPDATE: 2, **_posts(1)}


@pytest.mark.parametrize("finished", [False, True], ids=["running", "finished"])
def test_status_after_a_reconnect_is_one_request(stack, counter, finished):
    first = stack.connect()
    stack.send(first, {"action": "job", "id": "r1", "payload": {"steps": 1}})
    if finished:
        stack.drain()
    stack.disconnect(first)
    second = _connect(stack)
    with counter.measure() as measured:
        reply = stack.send(second, {"action": "status", "payload": {"request_id": "r1"}})
    assert reply["snapshot"]["status"] == ("COMPLETED" if finished else "QUEUED")
    assert measured.counts.calls() == {UPDATE: 1}


def test_status_of_an_unknown_request_is_one_request(stack, counter):
    connection = _connect(stack)
    with counter.measure() as measured:
        reply = stack.send(connection, {"action": "status", "payload": {"request_id": "none"}})
    assert reply["code"] == "NOT_FOUND"
    assert measured.counts.calls() == {UPDATE: 1}


def test_subscribe_is_the_cap_query_and_one_write(stack, counter):
    connection = _connect(stack)
    with counter.measure() as measured:
        reply = stack.send(connection, {"action": "subscribe", "payload": {"topic": "news"}})
    assert reply["type"] == "subscribed"
    assert measured.counts.calls() == {"dynamodb.Query": 1, "dynamodb.PutItem": 1}


def test_a_refused_message_costs_nothing_once_the_window_is_known_spent(stack, counter):
    stack.reconfigure(rate_limit=3)
    connection = stack.connect()
    stack.clock.now = 1_800_000_000.0
    for index in range(3):
        assert stack.send(connection, {"action": "ping", "id": f"p{index}"})["type"] == "pong"
    with counter.measure() as first:
        assert stack.send(connection, {"action": "ping"})["code"] == "RATE_LIMITED"
    with counter.measure() as later:
        for _ in range(20):
            assert stack.send(connection, {"action": "ping"})["code"] == "RATE_LIMITED"
    assert first.counts.calls() == {UPDATE: 1}  # the refused reservation says why
    assert later.counts.calls() == {}
    stack.clock.advance(60)
    with counter.measure() as next_window:
        assert stack.send(connection, {"action": "ping"})["type"] == "pong"
    assert next_window.counts.calls() == {UPDATE: 1}


def _subscribers(stack, n: int, topic: str = "wide") -> None:
    subscriptions = stack.runtime.storage.subscriptions
    expires = int(stack.clock()) + 3600
    for index in range(n):
        subscriptions.subscribe(f"c{index:05d}=", "acme", topic, expires_at=expires)


@pytest.mark.parametrize("subscribers", [1, 100, DIRECT_MAX])
def test_a_direct_publish_is_one_query_and_a_post_per_subscriber(stack, counter, subscribers):
    _subscribers(stack, subscribers)
    with counter.measure() as measured:
        report = publish("acme", "wide", {"n": 1}, runtime=stack.runtime)
    assert len(report.delivered) == subscribers
    # The first page asks for one more than the direct limit: a topic that fits is one query.
    assert measured.counts.calls() == {"dynamodb.Query": 1, **_posts(subscribers)}


@pytest.mark.parametrize("subscribers", [DIRECT_MAX + 1, 2001])
def test_a_sharded_publish_is_its_pages_a_batch_per_ten_shards_then_a_query_per_shard(
    stack, counter, monkeypatch, subscribers
):
    monkeypatch.setenv("STREAMER_FANOUT_SENDS_PER_SECOND", "1000000")
    _subscribers(stack, subscribers)
    with counter.measure() as published:
        report = publish("acme", "wide", {"n": 1}, runtime=stack.runtime)
    shards = math.ceil(subscribers / SHARD_SIZE)
    assert (report.queued, report.shards) == (subscribers, shards)
    # A first page of the direct limit plus one, then pages of 1,000.
    pages = 1 + math.ceil((subscribers - DIRECT_MAX - 1) / PAGE)
    assert published.counts.calls() == {
        "dynamodb.Query": pages,
        "sqs.SendMessageBatch": math.ceil(shards / 10),
    }
    messages = []
    while batch := stack.receive_messages():
        for message in batch:
            stack.sqs.delete_message(
                QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
        messages += batch
    assert len(messages) == shards
    with counter.measure() as processed:
        for start in range(0, shards, 10):
            batch = [{"body": m["Body"]} for m in messages[start : start + 10]]
            assert stack.process(batch) == {"batchItemFailures": []}
    # Each shard checks its connections by their subscriptions' keys (a shard is not trusted).
    assert processed.counts.calls() == {"dynamodb.BatchGetItem": shards, **_posts(subscribers)}
