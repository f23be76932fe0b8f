"""Publishing through the work queue: any backend that may send to it, checked like a client.

The tenant boundary holds there as everywhere: a message for one tenant reaches that
tenant's subscribers of its topic and nobody else, whatever else the message says.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from streamer_handlers import publish
from streamer_handlers._delivery import sharding
from streamer_handlers._delivery.sharding import publish_body


@pytest.fixture
def queue_stack(stack, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STREAMER_FANOUT_SHARD_SIZE", "3")
    monkeypatch.setenv("STREAMER_FANOUT_DIRECT_MAX", "2")
    monkeypatch.setenv("STREAMER_FANOUT_SENDS_PER_SECOND", "1000000")
    monkeypatch.setattr(sharding, "retry_delay_seconds", lambda attempt: 0)
    return stack


def _subscribed(stack, tenant: str, topic: str, n: int, prefix: str) -> list[str]:
    """Connections made through `$connect` and `subscribe`, as clients make them."""
    ids = []
    for index in range(n):
        connection = stack.connect(f"user{index}", tenant, connection_id=f"{prefix}{index:03d}=")
        reply = stack.send(connection, {"action": "subscribe", "payload": {"topic": topic}})
        assert reply["type"] == "subscribed"
        ids.append(connection)
    return ids


def _send(stack, body: str | dict[str, Any]) -> None:
    text = body if isinstance(body, str) else json.dumps(body)
    stack.sqs.send_message(QueueUrl=stack.queue_url, MessageBody=text)


def _run_queue(stack) -> list[dict[str, Any]]:
    """Process until the queue is empty; every batch's response."""
    responses = []
    while messages := stack.receive_messages():
        for message in messages:
            stack.sqs.delete_message(
                QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
        batch = [{"body": m["Body"], "message_id": m["MessageId"]} for m in messages]
        responses.append(stack.process(batch))
    return responses


def _events(stack) -> Counter[str]:
    return Counter(cid for cid, frame in stack.sender.sent if frame["type"] == "event")


def _rejections(log_lines) -> list[dict[str, Any]]:
    return [line for line in log_lines() if line.get("message") == "queue message rejected"]


@pytest.mark.parametrize("subscribers", [2, 7], ids=["direct", "sharded"])
def test_a_publish_message_reaches_the_tenants_subscribers(queue_stack, subscribers):
    stack = queue_stack
    acme = _subscribed(stack, "acme", "news", subscribers, "a")
    globex = _subscribed(stack, "globex", "news", 3, "g")
    acme_elsewhere = _subscribed(stack, "acme", "sports", 1, "s")
    _send(stack, publish_body("acme", "news", {"headline": "hi"}, event_id="evt-q1"))
    assert all(r == {"batchItemFailures": []} for r in _run_queue(stack))
    assert _events(stack) == Counter(acme)
    for connection in acme:
        [event] = stack.frames(connection, "event")
        assert (event["topic"], event["data"], event["id"]) == (
            "news",
            {"headline": "hi"},
            "evt-q1",
        )
    for connection in (*globex, *acme_elsewhere):
        assert stack.frames(connection, "event") == []


def test_the_documented_minimal_message_works(queue_stack):
    stack = queue_stack
    [connection] = _subscribed(stack, "acme", "news", 1, "a")
    _send(stack, '{"kind":"publish","tenant":"acme","topic":"news","data":"plain"}')
    [response] = _run_queue(stack)
    assert response == {"batchItemFailures": []}
    [event] = stack.frames(connection, "event")
    assert event["data"] == "plain"
    # Without an id of its own the event's id comes from the SQS message, so a second
    # delivery of that message is recognisably the same event.
    assert event["id"].startswith("sqs-")


def test_a_redelivered_publish_message_sends_the_same_event_id(queue_stack):
    stack = queue_stack
    [connection] = _subscribed(stack, "acme", "news", 1, "a")
    body = publish_body("acme", "news", 1)
    for _ in range(2):
        stack.process([{"body": body, "message_id": "same-message"}])
    first, second = stack.frames(connection, "event")
    assert first["id"] == second["id"] == "sqs-same-message"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"kind":"publish"', None),  # not JSON: a job key to the processor, and not one
        ('{"kind":"erase","tenant":"acme","topic":"news"}', "kind"),
        ('{"kind":["publish"],"tenant":"acme","topic":"news"}', "kind"),
        ('{"kind":"publish","topic":"news"}', "tenant"),
        ('{"kind":"publish","tenant":"","topic":"news"}', "tenant"),
        ('{"kind":"publish","tenant":42,"topic":"news"}', "tenant"),
        ('{"kind":"publish","tenant":"initech","topic":"news"}', "tenant"),
        ('{"kind":"publish","tenant":"acme"}', "topic"),
        ('{"kind":"publish","tenant":"acme","topic":"bad topic"}', "topic"),
        ('{"kind":"publish","tenant":"acme","topic":"$request/x"}', "topic"),
        ('{"kind":"publish","tenant":"acme","topic":"news","id":"has space"}', "id"),
        ('{"kind":"publish","tenant":"acme","topic":"news","id":7}', "id"),
        (
            '{"kind":"fanout","tenant":"acme","topic":"news","id":"e","published_at":1,'
            '"connections":[],"attempt":1}',
            "connections",
        ),
        (
            '{"kind":"fanout","tenant":"acme","topic":"news","id":"e","published_at":1,'
            '"connections":["a",""],"attempt":1}',
            "connections",
        ),
        (
            '{"kind":"fanout","tenant":"acme","topic":"news","id":"e","published_at":1,'
            '"connections":"a","attempt":1}',
            "connections",
        ),
        (
            '{"kind":"fanout","tenant":"acme","topic":"news","id":"e","published_at":1,'
            '"connections":["a"],"attempt":0}',
            "attempt",
        ),
        (
            '{"kind":"fanout","tenant":"acme","topic":"news","published_at":1,'
            '"connections":["a"],"attempt":1}',
            "id",
        ),
        (
            '{"kind":"fanout","tenant":"acme","topic":"news","id":"e","published_at":"now",'
            '"connections":["a"],"attempt":1}',
            "published_at",
        ),
    ],
)
def test_a_malformed_message_is_dropped_with_a_reason_and_never_fails_the_batch(
    queue_stack, log_lines, body, field
):
    stack = queue_stack
    [connection] = _subscribed(stack, "acme", "news", 1, "a")
    _send(stack, body)
    _send(stack, publish_body("acme", "news", "after"))
    responses = _run_queue(stack)
    if field is None:
        # Not JSON at all: the processor reads it as a job, which fails and is retried
        # (then dead-lettered) as any broken job message is; the good one still goes out.
        assert [len(r["batchItemFailures"]) for r in responses] == [1]
    else:
        assert responses == [{"batchItemFailures": []}]
        [rejection] = _rejections(log_lines)
        assert rejection["field"] == field
        assert rejection["reason"]
        assert rejection["level"] == "WARNING"
    assert [e["data"] for e in stack.frames(connection, "event")] == ["after"]


def test_an_event_over_the_frame_limit_is_rejected(queue_stack, log_lines):
    stack = queue_stack
    [connection] = _subscribed(stack, "acme", "news", 1, "a")
    _send(stack, publish_body("acme", "news", "x" * (130 * 1024)))
    assert _run_queue(stack) == [{"batchItemFailures": []}]
    assert _rejections(log_lines)[0]["field"] == "data"
    assert stack.frames(connection) == []


@pytest.mark.parametrize("tenant", ["acme#news", "acme#"])
def test_a_tenant_holding_the_key_separator_reaches_nobody(queue_stack, log_lines, tenant):
    """`acme` + `news#x` and `acme#news` + `x` would be the same key: both are refused."""
    stack = queue_stack
    stack.reconfigure(allowed_tenants=None)  # the separator alone must be enough
    _subscribed(stack, "acme", "news", 1, "a")
    _send(stack, {"kind": "publish", "tenant": tenant, "topic": "x", "data": 1})
    _send(stack, {"kind": "publish", "tenant": "acme", "topic": "news#x", "data": 1})
    assert _run_queue(stack) == [{"batchItemFailures": []}]
    assert [r["field"] for r in _rejections(log_lines)] == ["tenant", "topic"]
    assert stack.sender.sent == []


def test_publish_for_one_tenant_never_reaches_another_through_any_entry_point(queue_stack):
    """Python publish, a queue publish, small and sharded: globex hears only its own."""
    stack = queue_stack
    acme = _subscribed(stack, "acme", "news", 5, "a")
    globex = _subscribed(stack, "globex", "news", 5, "g")
    publish("acme", "news", "python, sharded")
    _send(stack, publish_body("acme", "news", "queue, sharded"))
    _subscribed(stack, "acme", "small", 1, "s")
    _send(stack, publish_body("acme", "small", "queue, direct"))
    _run_queue(stack)
    for connection in globex:
        assert stack.frames(connection, "event") == []
    for connection in acme:
        got = [e["data"] for e in stack.frames(connection, "event")]
        assert sorted(got) == ["python, sharded", "queue, sharded"]


def test_a_hostile_shard_naming_another_tenants_connections_reaches_only_its_own(queue_stack):
    """A shard message is not trusted: each connection it lists is checked against the
    subscriptions of the tenant it names."""
    stack = queue_stack
    acme = _subscribed(stack, "acme", "news", 2, "c")
    globex = _subscribed(stack, "globex", "news", 2, "d")
    shard = {
        "kind": "fanout",
        "tenant": "acme",
        "topic": "news",
        "id": "evt-hostile",
        "published_at": 1,
        "data": "for acme",
        "connections": [*acme, *globex],
        "attempt": 1,
    }
    _send(stack, shard)
    _send(stack, {**shard, "connections": globex, "id": "evt-hostile-2"})
    assert _run_queue(stack) == [{"batchItemFailures": []}]
    assert _events(stack) == Counter(acme)


def test_a_message_for_an_unknown_kind_next_to_jobs_leaves_the_jobs_alone(queue_stack):
    stack = queue_stack
    connection = stack.connect()
    stack.send(connection, {"action": "job", "id": "j1", "payload": {"steps": 1}})
    _send(stack, {"kind": "nothing"})
    assert _run_queue(stack) == [{"batchItemFailures": []}]
    assert [f["type"] for f in stack.frames(connection)][-1] == "complete"
