"""Jobs that arrive in one SQS batch start together, and still fail one by one."""

from __future__ import annotations

import threading
import time
from typing import Any

from streamer_handlers.functions.processor import run_records


def _batch(stack) -> list[dict[str, Any]]:
    return [
        {"body": m["Body"], "message_id": m["MessageId"], "receive_count": 1}
        for m in stack.receive_messages()
    ]


def test_jobs_of_one_batch_run_side_by_side(stack):
    together = threading.Barrier(3, timeout=5)

    @stack.app.action("job.meets", asynchronous=True)
    def meets(request, progress):
        together.wait()  # returns only once all three jobs are running at the same time
        return request.id

    connection = stack.connect()
    for index in range(3):
        stack.send(connection, {"action": "job.meets", "id": f"m{index}"})
    batch = _batch(stack)
    assert len(batch) == 3
    assert stack.process(batch) == {"batchItemFailures": []}
    completed = sorted(f["result"] for f in stack.frames(connection, "complete"))
    assert completed == ["m0", "m1", "m2"]


def test_only_the_failing_record_of_a_batch_stays_on_the_queue(stack):
    connection = stack.connect()
    stack.send(connection, {"action": "job", "id": "fine", "payload": {"steps": 1}})
    stack.send(connection, {"action": "job.crashes", "id": "broken"})
    stack.send(connection, {"action": "job", "id": "also-fine", "payload": {"steps": 1}})
    batch = _batch(stack)
    by_request = {b["body"]: b["message_id"] for b in batch}
    broken = next(m for body, m in by_request.items() if '"broken"' in body)
    assert stack.process(batch) == {"batchItemFailures": [{"itemIdentifier": broken}]}
    done = {f["request_id"] for f in stack.frames(connection, "complete")}
    assert done == {"fine", "also-fine"}
    record = stack.runtime.storage.requests.get(stack.request_key("broken"))
    assert record is not None
    assert str(record.status) == "PROCESSING"  # released for the redelivery
    assert record.lease_until == 0


def test_a_batch_takes_as_long_as_its_longest_job_not_their_sum():
    def handle(record: dict[str, Any]) -> None:
        time.sleep(0.2)

    started = time.monotonic()
    failed = run_records([{"messageId": str(i), "body": str(i)} for i in range(5)], handle)
    assert failed == []
    assert time.monotonic() - started < 0.2 * 5 / 2


def test_no_more_records_run_at_once_than_allowed():
    running = 0
    most = 0
    lock = threading.Lock()

    def handle(record: dict[str, Any]) -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1

    records = [{"messageId": str(i), "body": str(i)} for i in range(7)]
    assert run_records(records, handle, parallel=2) == []
    assert most == 2


def test_failures_are_reported_in_the_order_of_the_batch():
    def handle(record: dict[str, Any]) -> None:
        time.sleep(0.01 * (5 - int(record["messageId"])))
        if int(record["messageId"]) % 2:
            raise RuntimeError("odd")

    records = [{"messageId": str(i), "body": str(i)} for i in range(5)]
    assert run_records(records, handle) == ["1", "3"]


def test_copies_of_one_message_run_one_after_the_other():
    seen: list[str] = []
    inside = threading.Lock()

    def handle(record: dict[str, Any]) -> None:
        assert inside.acquire(blocking=False), "two copies of one message ran at once"
        try:
            time.sleep(0.02)
            seen.append(record["messageId"])
        finally:
            inside.release()

    records = [{"messageId": m, "body": "same"} for m in ("a", "b", "c")]
    assert run_records(records, handle) == []
    assert seen == ["a", "b", "c"]
