"""Tenant isolation as a property: random tenants, users, topics and requests, one model.

Every tenant shares the same tables, queue and functions, so isolation rests entirely on how
keys are built and checked. A scenario here is a random interleaving of subscriptions,
server-side publishes, submitted jobs, ``status`` and ``cancel`` calls (with request ids
deliberately reused across users and tenants), and queue processing. A model says who
should hear what; the handlers must match it exactly, and every frame that reaches a
connection must have been produced for that connection's own tenant (and, for request
updates, its own user).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_support import Harness, build_harness, isolation_app
from streamer_handlers import publish

PROPERTY = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TENANTS = ("t0", "t1", "t2")
USERS = ("u0", "u1")
TOPICS = ("news", "alerts", "a/b")
REQUEST_IDS = ("r1", "r2", "r3")
# Topic names that try to reach another tenant's or another request's subscribers.
FORGED_TOPICS = ("t1#news", "$request/r1/u0", "#news", "news#")

_scenarios = itertools.count(1)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[tuple[str, str]], list[tuple[Any, ...]]]:
    connections = draw(
        st.lists(
            st.tuples(st.sampled_from(TENANTS), st.sampled_from(USERS)), min_size=2, max_size=6
        )
    )
    index = st.integers(min_value=0, max_value=len(connections) - 1)
    operation = st.one_of(
        st.tuples(st.just("subscribe"), index, st.sampled_from(TOPICS)),
        st.tuples(st.just("unsubscribe"), index, st.sampled_from(TOPICS)),
        st.tuples(st.just("forged_subscribe"), index, st.sampled_from(FORGED_TOPICS)),
        st.tuples(st.just("publish"), st.sampled_from(TENANTS), st.sampled_from(TOPICS)),
        st.tuples(st.just("submit"), index, st.sampled_from(REQUEST_IDS)),
        st.tuples(st.just("status"), index, st.sampled_from(REQUEST_IDS)),
        st.tuples(st.just("cancel"), index, st.sampled_from(REQUEST_IDS)),
        st.tuples(st.just("whoami"), index),
        st.tuples(st.just("process")),
    )
    return connections, draw(st.lists(operation, min_size=1, max_size=25))


@dataclass
class Model:
    """What the handlers must do, computed without them."""

    owners: dict[str, tuple[str, str]]
    subscriptions: dict[str, set[str]] = field(default_factory=dict)
    # (tenant, user, request id) -> "QUEUED" | "COMPLETED" | "CANCELLED"
    requests: dict[tuple[str, str, str], str] = field(default_factory=dict)
    followers: dict[tuple[str, str, str], set[str]] = field(default_factory=dict)
    events: dict[str, list[int]] = field(default_factory=dict)

    def subscribers(self, tenant: str, topic: str) -> set[str]:
        return {
            cid
            for cid, topics in self.subscriptions.items()
            if self.owners[cid][0] == tenant and topic in topics
        }


@pytest.fixture
def harness(aws: dict[str, Any], signing_keys: tuple[str, str], installed_runtime: None) -> Harness:
    return build_harness(aws, signing_keys, isolation_app())


@PROPERTY
@given(scenario=scenarios())
def test_no_frame_crosses_a_tenant_and_no_request_is_reachable_by_another_user(
    harness: Harness, scenario: tuple[list[tuple[str, str]], list[tuple[Any, ...]]]
) -> None:
    """Exact audiences for events, own-user scope for requests, origin stamped on every frame."""
    prefix = f"s{next(_scenarios)}"
    people, operations = scenario
    ids = [harness.connect(user, f"{prefix}-{tenant}") for tenant, user in people]
    model = Model(owners={cid: harness.owners[cid] for cid in ids})
    sent_before = len(harness.sender.sent)
    counter = itertools.count(1)

    for operation in operations:
        kind = operation[0]
        if kind in ("subscribe", "unsubscribe"):
            cid, topic = ids[operation[1]], operation[2]
            reply = harness.send(cid, kind, {"topic": topic}, id=f"m{next(counter)}")
            assert (reply["type"], reply["topic"]) == (f"{kind}d", topic), reply
            topics = model.subscriptions.setdefault(cid, set())
            if kind == "subscribe":
                topics.add(topic)
            else:
                topics.discard(topic)
        elif kind == "forged_subscribe":
            cid, topic = ids[operation[1]], operation[2]
            reply = harness.send(cid, "subscribe", {"topic": topic}, id=f"m{next(counter)}")
            assert (reply["type"], reply.get("code")) == ("error", "VALIDATION_ERROR"), reply
        elif kind == "publish":
            tenant = f"{prefix}-{operation[1]}"
            number = next(counter)
            report = publish(
                tenant, operation[2], {"tenant": tenant, "n": number}, runtime=harness.runtime
            )
            expected = model.subscribers(tenant, operation[2])
            assert set(report.delivered) == expected, (report, expected)
            assert not report.gone
            assert not report.failed
            for cid in expected:
                model.events.setdefault(cid, []).append(number)
        elif kind == "submit":
            cid, request_id = ids[operation[1]], operation[2]
            key = (*model.owners[cid], request_id)
            reply = harness.send(cid, "job", {}, id=request_id)
            assert reply["type"] == "acknowledgment", reply
            assert reply["status"] == model.requests.get(key, "QUEUED"), (reply, key)
            model.requests.setdefault(key, "QUEUED")
            if model.requests[key] == "QUEUED":
                model.followers.setdefault(key, set()).add(cid)
        elif kind == "status":
            cid, request_id = ids[operation[1]], operation[2]
            key = (*model.owners[cid], request_id)
            reply = harness.send(cid, "status", {"request_id": request_id}, id=f"m{next(counter)}")
            if key in model.requests:
                assert reply["type"] == "status", reply
                assert reply["snapshot"]["request_id"] == request_id
                assert reply["snapshot"]["status"] == model.requests[key], (reply, key)
                if model.requests[key] == "QUEUED":
                    model.followers[key].add(cid)
            else:
                # Another user's or tenant's request of the same id is simply not there.
                assert (reply["type"], reply.get("code")) == ("error", "NOT_FOUND"), (reply, key)
        elif kind == "cancel":
            cid, request_id = ids[operation[1]], operation[2]
            key = (*model.owners[cid], request_id)
            reply = harness.send(cid, "cancel", {"request_id": request_id}, id=f"m{next(counter)}")
            if key in model.requests:
                assert reply["type"] == "status", reply
                if model.requests[key] == "QUEUED":
                    model.requests[key] = "CANCELLED"
                assert reply["snapshot"]["status"] == model.requests[key], (reply, key)
            else:
                assert (reply["type"], reply.get("code")) == ("error", "NOT_FOUND"), (reply, key)
        elif kind == "whoami":
            cid = ids[operation[1]]
            reply = harness.send(cid, "whoami", id=f"m{next(counter)}")
            tenant, user = model.owners[cid]
            assert reply["result"] == {"tenant": tenant, "user": user}, reply
        else:
            harness.drain()
            for key, state in model.requests.items():
                if state == "QUEUED":
                    model.requests[key] = "COMPLETED"

    harness.drain()
    for key, state in model.requests.items():
        model.requests[key] = "COMPLETED" if state == "QUEUED" else state
        record = harness.request(*key)
        assert record is not None, key
        assert record.status.value == model.requests[key], (key, record)

    received: dict[str, list[int]] = {}
    for cid, frame in harness.sender.sent[sent_before:]:
        tenant, user = model.owners[cid]
        if frame["type"] == "event":
            assert frame["data"]["tenant"] == tenant, (cid, frame)
            received.setdefault(cid, []).append(frame["data"]["n"])
            continue
        key = (tenant, user, frame["request_id"])
        assert key in model.requests, (cid, frame)
        assert cid in model.followers[key], (cid, frame)
        if frame["type"] == "progress":
            assert (frame["metadata"]["tenant"], frame["metadata"]["user"]) == (tenant, user)
        elif frame["type"] == "complete":
            assert frame["result"] == {"tenant": tenant, "user": user}, (cid, frame)
        else:
            assert (frame["type"], frame.get("code")) == ("error", "CANCELLED"), (cid, frame)
            assert model.requests[key] == "CANCELLED"
    assert received == model.events

    for key, followers in model.followers.items():
        for cid in followers:
            ends = [
                f
                for f in harness.sender.frames(cid)
                if f.get("request_id") == key[2] and f["type"] in ("complete", "error")
            ]
            # Each follower hears how its request ended, once.
            assert len(ends) == 1, (key, cid, ends)
