"""Asynchronous requests: submission through the router, then the SQS processor."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError
from streamer_core import ProgressState
from streamer_handlers import Streamer
from streamer_handlers.deployment import ConnectionPruner, ManagementSender


def _queued(stack) -> list[dict[str, Any]]:
    """Messages on the queue, made visible again so the test can hand them over itself."""
    messages = stack.receive_messages()
    for message in messages:
        stack.sqs.change_message_visibility(
            QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    return messages


def _status(stack, request_id: str, sub: str = "alice", tenant: str = "acme") -> str:
    record = stack.runtime.storage.requests.get(stack.request_key(request_id, sub, tenant))
    assert record is not None
    return str(record.status)


def test_submission_queues_the_request_key_with_the_callers_permissions(stack):
    connection = stack.connect("alice", "acme", ["reports:write"])
    ack = stack.send(connection, {"action": "job", "id": "q1", "payload": {"steps": 2}})
    assert ack["type"] == "acknowledgment"
    messages = _queued(stack)
    assert len(messages) == 1
    assert json.loads(messages[0]["Body"]) == {
        "tenant_id": "acme",
        "user_id": "alice",
        "request_id": "q1",
    }
    assert messages[0]["MessageAttributes"]["permissions"]["StringValue"] == "reports:write"
    record = stack.runtime.storage.requests.get(stack.request_key("q1"))
    assert record is not None
    assert record.followers == {connection}


def test_resending_the_same_id_makes_no_second_job(stack):
    first = stack.connect()
    second = stack.connect()
    frame = {"action": "job", "id": "dup", "payload": {"steps": 2}}
    assert stack.send(first, frame)["status"] == "QUEUED"
    assert stack.send(second, frame)["status"] == "QUEUED"
    assert len(_queued(stack)) == 1
    assert stack.drain() == {"batchItemFailures": []}
    for connection in (first, second):
        assert [f["type"] for f in stack.frames(connection)][-1] == "complete"
    again = stack.send(first, frame)
    assert again == {
        "type": "acknowledgment",
        "request_id": "dup",
        "action": "job",
        "status": "COMPLETED",
    }
    assert _queued(stack) == []


def test_reusing_an_id_for_other_work_is_a_conflict(stack):
    connection = stack.connect()
    stack.send(connection, {"action": "job", "id": "same", "payload": {"steps": 2}})
    reply = stack.send(connection, {"action": "job", "id": "same", "payload": {"steps": 3}})
    assert reply["code"] == "CONFLICT"
    assert reply["details"] == {"field": "id"}


def test_the_same_id_from_another_user_is_another_request(stack):
    alice = stack.connect("alice", "acme")
    bob = stack.connect("bob", "acme")
    stack.send(alice, {"action": "job", "id": "shared"})
    assert stack.send(bob, {"action": "job", "id": "shared"})["status"] == "QUEUED"
    assert len(_queued(stack)) == 2


def test_a_request_stuck_in_queued_is_queued_again_on_resend(stack):
    connection = stack.connect()
    frame = {"action": "job", "id": "stuck"}
    stack.send(connection, frame)
    stack.receive_messages()  # the message is in flight (or lost): invisible now
    stack.send(connection, frame)
    assert stack.receive_messages() == []
    stack.clock.advance(61)
    stack.send(connection, frame)
    assert len(stack.receive_messages()) == 1


def test_a_queue_failure_fails_the_request_instead_of_losing_it(stack):
    class BrokenQueue:
        def send_message(self, **kwargs: Any) -> Any:
            raise ClientError({"Error": {"Code": "ServiceUnavailable"}}, "SendMessage")

    stack.reconfigure(sqs=BrokenQueue())
    connection = stack.connect()
    reply = stack.send(connection, {"action": "job", "id": "nq"})
    assert reply["code"] == "INTERNAL_ERROR"
    assert reply["request_id"] == "nq"
    assert _status(stack, "nq") == "FAILED"


def test_progress_is_coalesced_when_the_clock_stands_still(stack):
    connection = stack.connect()
    stack.send(connection, {"action": "job", "id": "c1", "payload": {"steps": 10}})
    assert stack.drain() == {"batchItemFailures": []}
    frames = stack.frames(connection)
    assert [(f["type"], f.get("percentage"), f.get("seq")) for f in frames] == [
        ("progress", 10.0, 1),
        ("progress", 100.0, 2),
        ("complete", None, None),
    ]


def test_progress_held_back_is_sent_by_the_timer(stack):
    @stack.app.action("job.pauses", asynchronous=True)
    def pauses(request, progress):
        progress.report(10)
        progress.report(20, "held")
        progress.report(30, "newest")
        assert stack.scheduler.fire() == 1
        progress.report(40, "held again")
        return "done"

    connection = stack.connect()
    stack.send(connection, {"action": "job.pauses", "id": "t1"})
    stack.drain()
    progress = stack.frames(connection, "progress")
    assert [(f["percentage"], f["message"], f["seq"]) for f in progress] == [
        (10.0, None, 1),
        (30.0, "newest", 2),
        (40.0, "held again", 3),
    ]
    assert stack.frames(connection)[-1]["type"] == "complete"


def test_progress_is_stored_on_the_request(stack):
    @stack.app.action("job.halfway", asynchronous=True)
    def halfway(request, progress):
        progress.report(50, "half", rows=7)
        record = stack.runtime.storage.requests.get(stack.request_key("h1"))
        assert record.progress == ProgressState(
            percentage=50, message="half", metadata={"rows": 7}, seq=1
        )
        return {"ok": True}

    connection = stack.connect()
    stack.send(connection, {"action": "job.halfway", "id": "h1"})
    assert stack.drain() == {"batchItemFailures": []}
    status = stack.send(connection, {"action": "status", "payload": {"request_id": "h1"}})
    assert status["snapshot"]["status"] == "COMPLETED"
    assert status["snapshot"]["result"] == {"ok": True}
    assert status["snapshot"]["progress"]["percentage"] == 50


def test_async_def_actions_run_in_the_processor(stack):
    connection = stack.connect()
    stack.send(connection, {"action": "async.job", "id": "a1"})
    stack.drain()
    assert [f["type"] for f in stack.frames(connection)] == ["progress", "complete"]
    assert stack.frames(connection)[-1]["result"] == "async done"


def test_duplicate_delivery_runs_the_action_once(stack):
    runs: list[str] = []

    @stack.app.action("job.counted", asynchronous=True)
    def counted(request, progress):
        runs.append(request.id)
        return len(runs)

    connection = stack.connect()
    stack.send(connection, {"action": "job.counted", "id": "d1"})
    message = _queued(stack)[0]
    delivery = {"body": message["Body"], "receive_count": 1}
    assert stack.process([delivery, dict(delivery, receive_count=2)]) == {"batchItemFailures": []}
    assert stack.process([dict(delivery, receive_count=3)]) == {"batchItemFailures": []}
    assert runs == ["d1"]
    assert len(stack.frames(connection, "complete")) == 1


def test_delivery_while_another_worker_holds_the_request_is_retried_later(stack):
    connection = stack.connect()
    stack.send(connection, {"action": "job", "id": "busy"})
    key = stack.request_key("busy")
    assert stack.runtime.storage.requests.claim(key, lease_seconds=600) is not None
    response = stack.process([{"body": key.to_json(), "message_id": "m-busy"}])
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-busy"}]}
    assert stack.frames(connection) == []
    assert _status(stack, "busy") == "PROCESSING"


def test_a_crash_is_retried_then_fails_on_the_last_attempt(stack):
    connection = stack.connect()
    stack.send(connection, {"action": "job.crashes", "id": "boom"})
    body = stack.request_key("boom").to_json()
    first = stack.process([{"body": body, "receive_count": 1, "message_id": "m1"}])
    assert first == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert _status(stack, "boom") == "PROCESSING"
    assert stack.frames(connection, "error") == []
    last = stack.process([{"body": body, "receive_count": 3, "message_id": "m3"}])
    assert last == {"batchItemFailures": []}
    assert _status(stack, "boom") == "FAILED"
    errors = stack.frames(connection, "error")
    assert errors == [
        {
            "type": "error",
            "request_id": "boom",
            "code": "INTERNAL_ERROR",
            "message": "internal error",
            "details": {},
        }
    ]
    record = stack.runtime.storage.requests.get(stack.request_key("boom"))
    assert record.attempts == 2


def test_a_request_whose_worker_died_is_taken_over_after_the_lease(stack):
    connection = stack.connect()
    stack.send(connection, {"action": "job", "id": "orphan", "payload": {"steps": 1}})
    key = stack.request_key("orphan")
    assert stack.runtime.storage.requests.claim(key, lease_seconds=300) is not None
    early = stack.process([{"body": key.to_json(), "receive_count": 2, "message_id": "m2"}])
    assert early == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    stack.clock.advance(301)
    late = stack.process([{"body": key.to_json(), "receive_count": 3}])
    assert late == {"batchItemFailures": []}
    assert _status(stack, "orphan") == "COMPLETED"
    assert stack.frames(connection)[-1]["type"] == "complete"


def test_action_error_fails_at_once_with_its_code(stack):
    connection = stack.connect()
    stack.send(connection, {"action": "job.fails", "id": "f1"})
    assert stack.drain() == {"batchItemFailures": []}
    assert _status(stack, "f1") == "FAILED"
    error = stack.frames(connection, "error")[0]
    assert (error["code"], error["message"]) == ("VALIDATION_ERROR", "bad report spec")


def test_async_action_over_its_timeout_fails_with_timeout(stack):
    connection = stack.connect()
    stack.send(connection, {"action": "job.slow", "id": "slow"})
    assert stack.drain() == {"batchItemFailures": []}
    assert stack.frames(connection, "error")[0]["code"] == "TIMEOUT"
    assert _status(stack, "slow") == "FAILED"


def test_cancel_is_honoured_at_the_next_progress_report(stack):
    connection = stack.connect()
    observer = stack.connect()

    def cancel_now() -> None:
        reply = stack.send(observer, {"action": "cancel", "payload": {"request_id": "cx"}})
        assert reply["snapshot"]["status"] == "PROCESSING"
        stack.clock.advance(1)

    stack.hooks["cancel"] = cancel_now
    stack.send(connection, {"action": "job.cancellable", "id": "cx", "payload": {"hook": "cancel"}})
    assert stack.drain() == {"batchItemFailures": []}
    assert _status(stack, "cx") == "CANCELLED"
    frames = stack.frames(connection)
    assert [f["type"] for f in frames] == ["progress", "error"]
    assert frames[-1]["code"] == "CANCELLED"
    assert stack.frames(connection, "complete") == []


def test_a_cancelled_queued_request_is_never_run(stack):
    runs: list[str] = []

    @stack.app.action("job.never", asynchronous=True)
    def never(request, progress):
        runs.append(request.id)

    connection = stack.connect()
    stack.send(connection, {"action": "job.never", "id": "n1"})
    stack.send(connection, {"action": "cancel", "payload": {"request_id": "n1"}})
    assert stack.drain() == {"batchItemFailures": []}
    assert runs == []
    assert _status(stack, "n1") == "CANCELLED"


class FakeManagementClient:
    """Answers post_to_connection like API Gateway: 410 for connections that are gone."""

    def __init__(self, gone: set[str]) -> None:
        self.gone = gone
        self.posted: list[tuple[str, dict[str, Any]]] = []

    def post_to_connection(self, ConnectionId: str, Data: bytes) -> dict[str, Any]:
        if ConnectionId in self.gone:
            raise ClientError(
                {
                    "Error": {"Code": "GoneException", "Message": ""},
                    "ResponseMetadata": {"HTTPStatusCode": 410},
                },
                "PostToConnection",
            )
        self.posted.append((ConnectionId, json.loads(Data)))
        return {}


def test_a_stale_connection_is_pruned_during_fan_out(stack, capsys):
    alive = stack.connect()
    stale = stack.connect()
    frame = {"action": "job", "id": "fan", "payload": {"steps": 1}}
    stack.send(alive, frame)
    stack.send(stale, frame)
    stack.send(stale, {"action": "subscribe", "payload": {"topic": "news"}})
    client = FakeManagementClient(gone={stale})
    storage = stack.runtime.storage
    sender = ManagementSender(None, client=client, on_gone=ConnectionPruner(storage))
    stack.reconfigure(sender=sender)
    capsys.readouterr()
    assert stack.drain() == {"batchItemFailures": []}
    assert [f["type"] for c, f in client.posted if c == alive] == ["progress", "complete"]
    assert storage.connections.get(stale) is None
    assert storage.subscriptions.topics_of(stale) == []
    assert storage.connections.get(alive) is not None
    out = capsys.readouterr().out
    metrics = [json.loads(line) for line in out.splitlines() if "StaleConnectionsPruned" in line]
    assert sum(sum(m["StaleConnectionsPruned"]) for m in metrics) == 1


def test_status_after_reconnect_resumes_streaming(stack):
    @stack.app.action("job.resumable", asynchronous=True)
    def resumable(request, progress):
        progress.report(10)
        stack.hooks["reconnect"]()
        stack.clock.advance(1)
        progress.report(90)
        return "resumed"

    first = stack.connect()

    def reconnect() -> None:
        stack.disconnect(first)
        stack.sender.gone.add(first)  # a closed socket answers 410 on AWS
        second = stack.connect()
        stack.hooks["second"] = lambda: second  # type: ignore[assignment,return-value]
        status = stack.send(second, {"action": "status", "payload": {"request_id": "rs"}})
        assert status["snapshot"]["status"] == "PROCESSING"
        assert status["snapshot"]["progress"]["percentage"] == 10

    stack.hooks["reconnect"] = reconnect
    stack.send(first, {"action": "job.resumable", "id": "rs"})
    stack.drain()
    second = stack.hooks["second"]()
    assert [f["type"] for f in stack.frames(second)] == ["progress", "complete"]
    assert stack.frames(second)[0]["percentage"] == 90
    assert [f["type"] for f in stack.frames(first)] == ["progress"]


def test_malformed_queue_messages_are_left_for_the_dead_letter_queue(stack):
    response = stack.process([{"body": "not a key", "message_id": "bad"}])
    assert response == {"batchItemFailures": [{"itemIdentifier": "bad"}]}


def test_a_vanished_request_is_dropped(stack):
    body = stack.request_key("gone").to_json()
    assert stack.process([{"body": body}]) == {"batchItemFailures": []}


def test_a_request_for_an_action_no_longer_served_fails(stack):
    connection = stack.connect()
    stack.send(connection, {"action": "job", "id": "old"})
    stack.reconfigure(app=Streamer())
    assert stack.drain() == {"batchItemFailures": []}
    assert _status(stack, "old") == "FAILED"
    assert stack.frames(connection, "error")[0]["code"] == "NOT_FOUND"


def test_processor_logs_carry_the_request_id_as_correlation_id(stack, log_lines):
    connection = stack.connect()
    stack.send(connection, {"action": "job", "id": "corr-2", "payload": {"steps": 1}})
    stack.drain()
    [done] = [line for line in log_lines() if line.get("message") == "request completed"]
    assert done["correlation_id"] == "corr-2"
    assert done["sqs_message_id"] != "corr-2"
