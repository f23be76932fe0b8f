"""Every way a request can end badly leaves it FAILED and its followers told."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError
from streamer_core import MAX_FRAME_BYTES
from streamer_handlers import Streamer


def _status(stack, request_id: str) -> str:
    record = stack.runtime.storage.requests.get(stack.request_key(request_id))
    assert record is not None
    return str(record.status)


def _throttled(*args: Any, **kwargs: Any) -> Any:
    raise ClientError(
        {
            "Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        },
        "UpdateItem",
    )


def _delivery(stack, request_id: str, receive_count: int) -> dict[str, Any]:
    body = stack.request_key(request_id).to_json()
    return {"body": body, "receive_count": receive_count, "message_id": f"m-{receive_count}"}


def test_a_claim_that_fails_before_the_last_attempt_is_retried(stack, monkeypatch):
    connection = stack.connect()
    stack.send(connection, {"action": "job", "id": "thr"})
    monkeypatch.setattr(stack.runtime.storage.requests, "claim", _throttled)
    response = stack.process([_delivery(stack, "thr", 1)])
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    assert _status(stack, "thr") == "QUEUED"
    assert stack.frames(connection) == []


def test_a_claim_that_fails_on_the_last_attempt_fails_the_request_visibly(stack, monkeypatch):
    connection = stack.connect()
    stack.send(connection, {"action": "job", "id": "thr"})
    monkeypatch.setattr(stack.runtime.storage.requests, "claim", _throttled)
    assert stack.process([_delivery(stack, "thr", 3)]) == {"batchItemFailures": []}
    assert _status(stack, "thr") == "FAILED"
    [error] = stack.frames(connection, "error")
    assert (error["request_id"], error["code"]) == ("thr", "INTERNAL_ERROR")


def test_an_unknown_action_fails_even_when_its_error_cannot_be_delivered(stack, monkeypatch):
    connection = stack.connect()
    stack.send(connection, {"action": "job", "id": "gone.action"})
    stack.reconfigure(app=Streamer())

    def broken_send(connection_ids: Any, data: str) -> Any:
        raise ConnectionError("management API unreachable")

    monkeypatch.setattr(stack.sender, "send", broken_send)
    assert stack.drain() == {"batchItemFailures": []}
    assert _status(stack, "gone.action") == "FAILED"


def test_router_and_processor_word_an_unknown_action_the_same_way(stack):
    connection = stack.connect()
    stack.send(connection, {"action": "job", "id": "retired"})
    stack.reconfigure(app=Streamer())
    stack.drain()
    [queued] = stack.frames(connection, "error")
    direct = stack.send(connection, {"action": "job", "id": "retired2"})
    assert (queued["code"], queued["message"], queued["details"]) == (
        direct["code"],
        direct["message"],
        direct["details"],
    )


def test_a_result_that_status_could_not_return_fails_the_request(stack):
    size = MAX_FRAME_BYTES - 100

    @stack.app.action("job.huge", asynchronous=True)
    def huge(request, progress):
        return "x" * size

    complete = json.dumps(
        {"type": "complete", "request_id": "huge", "result": "x" * size}, separators=(",", ":")
    )
    assert len(complete) <= MAX_FRAME_BYTES
    connection = stack.connect()
    stack.send(connection, {"action": "job.huge", "id": "huge"})
    assert stack.drain() == {"batchItemFailures": []}
    assert stack.frames(connection, "complete") == []
    [error] = stack.frames(connection, "error")
    assert (error["request_id"], error["code"]) == ("huge", "INTERNAL_ERROR")
    assert "too large" in error["message"]
    assert _status(stack, "huge") == "FAILED"
    status = stack.send(connection, {"action": "status", "payload": {"request_id": "huge"}})
    assert status["snapshot"]["error"]["code"] == "INTERNAL_ERROR"


@pytest.mark.parametrize("request_id", ["r", "r" * 128])
def test_a_large_result_that_fits_status_is_returned_after_a_reconnect(stack, request_id):
    size = MAX_FRAME_BYTES - 1024

    @stack.app.action("job.large", asynchronous=True)
    def large(request, progress):
        progress.report(100, "almost")
        return "y" * size

    connection = stack.connect()
    stack.send(connection, {"action": "job.large", "id": request_id})
    assert stack.drain() == {"batchItemFailures": []}
    assert stack.frames(connection)[-1]["type"] == "complete"
    later = stack.connect()
    status = stack.send(
        later, {"action": "status", "id": "q" * 128, "payload": {"request_id": request_id}}
    )
    assert status["type"] == "status"
    assert status["snapshot"]["result"] == "y" * size
