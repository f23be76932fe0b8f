"""Server-side publish reaches the tenant's subscribers and nobody else."""

from __future__ import annotations

import pytest
from streamer_handlers import publish


def test_publish_reaches_only_the_tenants_subscribers(stack):
    acme_a = stack.connect("alice", "acme")
    acme_b = stack.connect("bob", "acme")
    acme_other_topic = stack.connect("carol", "acme")
    globex = stack.connect("alice", "globex")
    for connection in (acme_a, acme_b, globex):
        stack.send(connection, {"action": "subscribe", "payload": {"topic": "orders/eu"}})
    stack.send(acme_other_topic, {"action": "subscribe", "payload": {"topic": "orders/us"}})

    report = publish("acme", "orders/eu", {"order": 42}, event_id="evt-1")

    assert sorted(report.delivered) == sorted([acme_a, acme_b])
    for connection in (acme_a, acme_b):
        [event] = stack.frames(connection)
        assert event["type"] == "event"
        assert event["topic"] == "orders/eu"
        assert event["data"] == {"order": 42}
        assert event["id"] == "evt-1"
        assert isinstance(event["published_at"], int)
    assert stack.frames(globex) == []
    assert stack.frames(acme_other_topic) == []


def test_publish_to_a_topic_nobody_follows_sends_nothing(stack):
    report = publish("acme", "quiet", None)
    assert report.delivered == ()
    assert stack.sender.sent == []


def test_unsubscribed_connections_stop_receiving(stack):
    connection = stack.connect()
    stack.send(connection, {"action": "subscribe", "payload": {"topic": "t"}})
    stack.send(connection, {"action": "unsubscribe", "payload": {"topic": "t"}})
    assert publish("acme", "t", 1).delivered == ()


def test_publish_prunes_gone_subscribers(stack):
    alive = stack.connect()
    dead = stack.connect()
    for connection in (alive, dead):
        stack.send(connection, {"action": "subscribe", "payload": {"topic": "t"}})
    stack.sender.gone.add(dead)
    report = publish("acme", "t", "x", runtime=stack.runtime)
    assert report.delivered == (alive,)
    assert report.gone == (dead,)
    assert stack.runtime.storage.subscriptions.all_subscribers("acme", "t") == [alive]
    assert stack.runtime.storage.connections.get(dead) is None


@pytest.mark.parametrize("topic", ["", "$request/x/y", "a#b", "with space"])
def test_publish_refuses_invalid_and_internal_topics(stack, topic):
    with pytest.raises(ValueError, match="topic"):
        publish("acme", topic, 1)


def test_publish_needs_a_tenant(stack):
    with pytest.raises(ValueError, match="tenant"):
        publish("", "t", 1)
