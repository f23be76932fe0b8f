"""The main path end to end through the four functions: connect, echo, submit, process."""

from __future__ import annotations

import json

from streamer_core.storage import RequestKey


def test_echo_round_trip(stack):
    connection = stack.connect("alice", "acme")
    reply = stack.send(connection, {"action": "echo", "id": "r1", "payload": {"x": 1}})
    assert reply == {
        "type": "response",
        "request_id": "r1",
        "result": {"payload": {"x": 1}, "user": "alice", "tenant": "acme"},
    }


def test_async_job_streams_progress_then_completes(stack):
    connection = stack.connect("alice", "acme", permissions=["reports:read"])
    ack = stack.send(connection, {"action": "job", "id": "j1", "payload": {"steps": 4}})
    assert ack == {
        "type": "acknowledgment",
        "request_id": "j1",
        "action": "job",
        "status": "QUEUED",
    }
    messages = stack.receive_messages()
    assert [json.loads(m["Body"]) for m in messages] == [
        {"tenant_id": "acme", "user_id": "alice", "request_id": "j1"}
    ]
    stack.sqs.change_message_visibility(
        QueueUrl=stack.queue_url, ReceiptHandle=messages[0]["ReceiptHandle"], VisibilityTimeout=0
    )
    assert stack.drain() == {"batchItemFailures": []}
    frames = stack.frames(connection)
    types = [f["type"] for f in frames]
    assert types[-1] == "complete"
    assert frames[-1]["result"] == {"done": 4, "permissions": ["reports:read"]}
    progress = [f for f in frames if f["type"] == "progress"]
    assert progress[0]["percentage"] == 25
    assert progress[-1]["percentage"] == 100
    seqs = [f["seq"] for f in progress]
    assert seqs == sorted(set(seqs))
    record = stack.runtime.storage.requests.get(RequestKey("acme", "alice", "j1"))
    assert record is not None
    assert record.status == "COMPLETED"
    assert record.result == {"done": 4, "permissions": ["reports:read"]}
    assert record.progress is not None
    assert record.progress.percentage == 100
