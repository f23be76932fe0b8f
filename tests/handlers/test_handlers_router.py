"""The router: built-ins, user actions and every way a message can be refused."""

from __future__ import annotations

import json
import time

import pytest
from streamer_handlers._lambda.timers import TimerThread
from streamer_handlers.deployment import Runtime, set_runtime
from streamer_handlers.functions import router


def test_ping_answers_pong(stack):
    connection = stack.connect()
    reply = stack.send(connection, {"action": "ping", "id": "p1"})
    assert reply["type"] == "pong"
    assert reply["request_id"] == "p1"
    assert isinstance(reply["server_time"], int)


def test_id_is_generated_when_absent(stack):
    connection = stack.connect()
    reply = stack.send(connection, {"action": "ping"})
    assert reply["type"] == "pong"
    assert len(reply["request_id"]) == 26


def test_subscribe_and_unsubscribe_within_the_callers_tenant(stack):
    connection = stack.connect("alice", "acme")
    reply = stack.send(
        connection, {"action": "subscribe", "id": "s1", "payload": {"topic": "news"}}
    )
    assert reply == {"type": "subscribed", "request_id": "s1", "topic": "news"}
    subscriptions = stack.runtime.storage.subscriptions
    assert subscriptions.all_subscribers("acme", "news") == [connection]
    assert subscriptions.all_subscribers("globex", "news") == []
    reply = stack.send(
        connection, {"action": "unsubscribe", "id": "u1", "payload": {"topic": "news"}}
    )
    assert reply == {"type": "unsubscribed", "request_id": "u1", "topic": "news"}
    assert subscriptions.all_subscribers("acme", "news") == []


@pytest.mark.parametrize(
    "payload",
    [{}, {"topic": 5}, {"topic": "$request/x/y"}, {"topic": "a#b"}, {"topic": ""}],
    ids=["missing", "number", "internal", "hash", "empty"],
)
def test_subscribe_refuses_bad_and_reserved_topics(stack, payload):
    connection = stack.connect()
    reply = stack.send(connection, {"action": "subscribe", "id": "s2", "payload": payload})
    assert reply["type"] == "error"
    assert reply["code"] == "VALIDATION_ERROR"
    assert reply["request_id"] == "s2"
    assert stack.runtime.storage.subscriptions.topics_of(connection) == []


def test_status_and_cancel_of_own_request(stack):
    connection = stack.connect()
    stack.send(connection, {"action": "job", "id": "mine"})
    status = stack.send(
        connection, {"action": "status", "id": "st", "payload": {"request_id": "mine"}}
    )
    assert status["type"] == "status"
    assert status["request_id"] == "st"
    assert status["snapshot"]["request_id"] == "mine"
    assert status["snapshot"]["status"] == "QUEUED"
    cancel = stack.send(
        connection, {"action": "cancel", "id": "c", "payload": {"request_id": "mine"}}
    )
    assert cancel["snapshot"]["status"] == "CANCELLED"
    errors = stack.frames(connection, "error")
    assert errors == [
        {
            "type": "error",
            "request_id": "mine",
            "code": "CANCELLED",
            "message": "request cancelled",
            "details": {},
        }
    ]
    again = stack.send(connection, {"action": "cancel", "payload": {"request_id": "mine"}})
    assert again["snapshot"]["status"] == "CANCELLED"
    assert len(stack.frames(connection, "error")) == 1


def test_foreign_requests_are_not_found(stack):
    alice = stack.connect("alice", "acme")
    bob = stack.connect("bob", "acme")
    eve = stack.connect("alice", "globex")
    stack.send(alice, {"action": "job", "id": "secret"})
    for intruder in (bob, eve):
        for action in ("status", "cancel"):
            reply = stack.send(
                intruder, {"action": action, "id": "x", "payload": {"request_id": "secret"}}
            )
            assert reply["type"] == "error"
            assert reply["code"] == "NOT_FOUND"
            assert reply["details"] == {"field": "payload.request_id"}
    record = stack.runtime.storage.requests.get(stack.request_key("secret"))
    assert record is not None
    assert record.status == "QUEUED"


def test_sync_action_errors_map_to_codes(stack):
    connection = stack.connect()
    refused = stack.send(connection, {"action": "refuse", "id": "r"})
    assert refused == {
        "type": "error",
        "request_id": "r",
        "code": "CONFLICT",
        "message": "already done",
        "details": {"hint": "x"},
    }
    crashed = stack.send(connection, {"action": "crash", "id": "c"})
    assert crashed == {
        "type": "error",
        "request_id": "c",
        "code": "INTERNAL_ERROR",
        "message": "internal error",
        "details": {},
    }
    not_json = stack.send(connection, {"action": "not.json", "id": "n"})
    assert not_json["code"] == "INTERNAL_ERROR"


def test_async_def_sync_action(stack):
    connection = stack.connect()
    reply = stack.send(connection, {"action": "async.echo", "id": "a", "payload": {"k": [1, 2]}})
    assert reply == {"type": "response", "request_id": "a", "result": {"k": [1, 2]}}


def test_sync_action_past_its_deadline_answers_timeout(stack, monkeypatch):
    stack.reconfigure(sync_timeout=0.05)
    # The real timer thread: the watchdog answers while the action still runs.
    monkeypatch.setattr(stack.runtime, "schedule", TimerThread())
    connection = stack.connect()

    @stack.app.action("overrun")
    def overrun(request):
        deadline = time.monotonic() + 5
        while not stack.frames(connection, "error") and time.monotonic() < deadline:
            time.sleep(0.01)
        return "late"

    event = stack.events.message(
        connection, json.dumps({"action": "overrun", "id": "late"}), stack._principals[connection]
    )
    response = router.handler(event, stack.context())
    assert response == {"statusCode": 200}  # no route response: the client was answered
    [reply] = stack.frames(connection, "error")
    assert (reply["code"], reply["request_id"]) == ("TIMEOUT", "late")
    assert "0.05 s" in reply["message"]


def test_deadline_respects_lambdas_remaining_time(stack):
    connection = stack.connect()
    armed: list[float] = []

    @stack.app.action("peek")
    def peek(request):
        armed.append(stack.scheduler.timers[-1].delay)
        return "ok"

    event = stack.events.message(
        connection, json.dumps({"action": "peek", "id": "t"}), stack._principals[connection]
    )
    response = router.handler(event, stack.context(remaining_ms=1050))
    assert json.loads(response["body"])["result"] == "ok"
    assert armed == [pytest.approx(0.05)]


def test_missing_permission_is_forbidden(stack):
    plain = stack.connect("alice", "acme")
    reply = stack.send(plain, {"action": "admin.purge", "id": "x"})
    assert reply["code"] == "FORBIDDEN"
    assert reply["details"] == {"missing": ["admin"]}
    admin = stack.connect("root", "acme", ["admin"])
    assert stack.send(admin, {"action": "admin.purge"})["result"] == "purged"
    queued = stack.send(plain, {"action": "job.admin", "id": "y"})
    assert queued["code"] == "FORBIDDEN"
    assert stack.receive_messages() == []


def test_unknown_action_is_not_found(stack):
    connection = stack.connect()
    reply = stack.send(connection, {"action": "nope", "id": "z"})
    assert reply == {
        "type": "error",
        "request_id": "z",
        "code": "NOT_FOUND",
        "message": "unknown action 'nope'",
        "details": {"field": "action"},
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("{not json", None),
        ("[1, 2]", None),
        ('{"action": 5, "id": "w1"}', "action"),
        ('{"action": "echo", "id": "w2", "payload": [1]}', "payload"),
        ('{"action": "echo", "id": "w3", "extra": 1}', None),
        ('{"action": "echo", "id": "bad id!"}', "id"),
        ('{"action": "echo", "id": "w4", "metadata": {"k": 1}}', "metadata"),
        ('{"action": "echo", "id": "w5", "payload": {"x": NaN}}', None),
        (b"\xff\xfe\x00", None),
    ],
    ids=["json", "array", "action", "payload", "extra", "id", "metadata", "nan", "utf8"],
)
def test_malformed_frames_answer_validation_errors(stack, capsys, body, field):
    connection = stack.connect()
    capsys.readouterr()
    reply = stack.send_raw(connection, body)
    assert reply["type"] == "error"
    assert reply["code"] == "VALIDATION_ERROR"
    if field is not None:
        assert field in reply["message"] or reply["details"].get("field", "").startswith(field)
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "_aws" in line]
    assert any(m.get("MessageFailures") == [1.0] for m in metrics)


def test_frame_over_128_kb_is_refused(stack):
    connection = stack.connect()
    body = json.dumps({"action": "echo", "id": "big", "payload": {"blob": "x" * (129 * 1024)}})
    reply = stack.send_raw(connection, body)
    assert reply["code"] == "VALIDATION_ERROR"
    assert reply["request_id"] == "big"
    assert "131072" in reply["message"] or "128" in reply["message"]


def test_an_id_inside_the_payload_of_an_oversized_frame_is_not_taken_for_its_own(stack):
    connection = stack.connect()
    payload = {"id": "inner", "blob": "x" * (129 * 1024)}
    body = json.dumps({"action": "echo", "payload": payload, "id": "outer"})
    reply = stack.send_raw(connection, body)
    assert reply["code"] == "VALIDATION_ERROR"
    assert reply["request_id"] is None


def test_reply_over_128_kb_becomes_an_error(stack):
    connection = stack.connect()
    frame = {"action": "echo", "id": "near", "payload": {"blob": "x" * (128 * 1024 - 70)}}
    body = json.dumps(frame, separators=(",", ":"))
    assert len(body) < 128 * 1024
    reply = stack.send_raw(connection, body)
    assert reply["type"] == "error"
    assert (reply["code"], reply["request_id"]) == ("INTERNAL_ERROR", "near")
    assert "128 KB" in reply["message"]


def test_binary_frames_are_decoded(stack):
    connection = stack.connect()
    reply = stack.send_raw(connection, json.dumps({"action": "ping", "id": "b"}).encode())
    assert reply["type"] == "pong"


def test_rate_limit_per_connection(stack, capsys):
    stack.reconfigure(rate_limit=3)
    limited = stack.connect()
    other = stack.connect()
    replies = [stack.send(limited, {"action": "ping", "id": f"p{i}"}) for i in range(5)]
    assert [r["type"] for r in replies] == ["pong", "pong", "pong", "error", "error"]
    assert replies[3]["code"] == "RATE_LIMITED"
    assert replies[3]["request_id"] == "p3"
    assert stack.send(other, {"action": "ping"})["type"] == "pong"
    stack.clock.advance(61)
    assert stack.send(limited, {"action": "ping"})["type"] == "pong"
    out = capsys.readouterr().out
    assert '"RateLimited"' in out


def test_unknown_connection_without_authorizer_is_unauthorized(stack):
    event = stack.events.message("ghost=", json.dumps({"action": "ping", "id": "g"}), None)
    body = json.loads(router.handler(event, stack.context())["body"])
    assert body["code"] == "UNAUTHORIZED"
    assert body["request_id"] == "g"


def test_stored_connection_serves_as_identity_without_authorizer(stack):
    connection = stack.connect("carol", "globex")
    event = stack.events.message(connection, json.dumps({"action": "echo", "id": "e"}), None)
    body = json.loads(router.handler(event, stack.context())["body"])
    assert body["result"]["user"] == "carol"
    assert body["result"]["tenant"] == "globex"


def test_storage_failure_is_an_internal_error_not_a_crash(stack, aws):
    connection = stack.connect()
    broken = Runtime(stack.runtime.settings, dynamodb=object(), sqs=aws["sqs"], app=stack.app)
    set_runtime(broken)
    reply = stack.send(connection, {"action": "ping", "id": "q"})
    assert reply == {
        "type": "error",
        "request_id": "q",
        "code": "INTERNAL_ERROR",
        "message": "internal error",
        "details": {},
    }


def test_a_connection_that_was_pruned_must_reconnect(stack):
    connection = stack.connect()
    stack.runtime.storage.connections.delete(connection)
    reply = stack.send(connection, {"action": "ping", "id": "pr"})
    assert reply["code"] == "UNAUTHORIZED"
    assert reply["request_id"] == "pr"


def test_async_actions_leave_the_callers_event_loop_alone(stack):
    import asyncio
    import threading

    connection = stack.connect()
    seen: list[object] = []

    def caller() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            seen.append(stack.send(connection, {"action": "async.echo", "payload": {}})["type"])
            seen.append(asyncio.get_event_loop() is loop)
        finally:
            loop.close()

    thread = threading.Thread(target=caller)
    thread.start()
    thread.join()
    assert seen == ["response", True]


def test_subscriptions_per_connection_are_capped(stack):
    stack.reconfigure(max_subscriptions=2)
    connection = stack.connect()
    for topic in ("a", "b"):
        assert (
            stack.send(connection, {"action": "subscribe", "payload": {"topic": topic}})["type"]
            == "subscribed"
        )
    refused = stack.send(connection, {"action": "subscribe", "id": "s3", "payload": {"topic": "c"}})
    assert (refused["type"], refused["code"], refused["request_id"]) == (
        "error",
        "VALIDATION_ERROR",
        "s3",
    )
    assert refused["details"]["limit"] == 2
    assert "unsubscribe" in refused["message"]
    again = stack.send(connection, {"action": "subscribe", "payload": {"topic": "a"}})
    assert again["type"] == "subscribed"
    assert stack.send(connection, {"action": "job", "id": "own"})["type"] == "acknowledgment"
    stack.send(connection, {"action": "unsubscribe", "payload": {"topic": "b"}})
    assert (
        stack.send(connection, {"action": "subscribe", "payload": {"topic": "c"}})["type"]
        == "subscribed"
    )


def test_router_logs_carry_the_clients_request_id_as_correlation_id(stack, log_lines):
    connection = stack.connect()
    stack.send(connection, {"action": "crash", "id": "corr-1"})
    [failure] = [line for line in log_lines() if line.get("message") == "action failed"]
    assert failure["correlation_id"] == "corr-1"
    assert failure["gateway_request_id"].startswith("rid-")
