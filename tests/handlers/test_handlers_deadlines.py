"""Deadlines: an action stops (or is answered for) before Lambda ends the invocation."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from streamer_handlers import Streamer
from streamer_handlers._action_runner import DeadlineExceeded, run_action
from streamer_handlers._processor.jobs import PROCESSOR_MARGIN_SECONDS
from streamer_handlers.functions import router


def _remaining_ms(seconds_after_margin: float) -> int:
    return int((PROCESSOR_MARGIN_SECONDS + seconds_after_margin) * 1000)


def _record(stack, request_id: str) -> Any:
    record = stack.runtime.storage.requests.get(stack.request_key(request_id))
    assert record is not None
    return record


@pytest.mark.parametrize("kind", ["def", "async def"])
def test_an_action_without_timeout_stops_before_lambda_ends_the_invocation(stack, kind):
    gate: threading.Event = stack.app.gate

    if kind == "def":

        @stack.app.action("job.endless", asynchronous=True)
        def endless(request, progress):
            gate.wait(5)
            return "late"

    else:

        @stack.app.action("job.endless", asynchronous=True)
        async def endless(request, progress):
            await asyncio.sleep(5)
            return "late"

    connection = stack.connect()
    stack.send(connection, {"action": "job.endless", "id": "long"})
    context = stack.context(remaining_ms=_remaining_ms(0.05))
    assert stack.drain(context=context) == {"batchItemFailures": []}
    assert _record(stack, "long").status == "FAILED"
    errors = stack.frames(connection, "error")
    assert [(e["request_id"], e["code"]) for e in errors] == [("long", "TIMEOUT")]


def test_a_record_is_not_started_with_less_than_the_margin_left(stack):
    connection = stack.connect()
    stack.send(connection, {"action": "job", "id": "late", "payload": {"steps": 1}})
    message = stack.receive_messages()[0]
    delivery = {"body": message["Body"], "receive_count": 1, "message_id": "m-late"}
    short = stack.context(remaining_ms=_remaining_ms(-1))
    assert stack.process([delivery], short) == {"batchItemFailures": [{"itemIdentifier": "m-late"}]}
    record = _record(stack, "late")
    assert (record.status, record.attempts) == ("QUEUED", 0)
    assert stack.frames(connection) == []
    assert stack.process([delivery]) == {"batchItemFailures": []}
    assert _record(stack, "late").status == "COMPLETED"


def test_a_last_attempt_without_time_to_start_fails_the_request_visibly(stack):
    connection = stack.connect()
    stack.send(connection, {"action": "job", "id": "never"})
    message = stack.receive_messages()[0]
    delivery = {"body": message["Body"], "receive_count": 3, "message_id": "m-never"}
    short = stack.context(remaining_ms=_remaining_ms(-1))
    assert stack.process([delivery], short) == {"batchItemFailures": []}
    assert _record(stack, "never").status == "FAILED"
    [error] = stack.frames(connection, "error")
    assert (error["request_id"], error["code"]) == ("never", "INTERNAL_ERROR")
    assert "ran out of time" in error["message"]


def _spec(func: Any) -> Any:
    app = Streamer()
    app.action("probe")(func)
    return app["probe"]


def test_in_place_runs_a_def_action_on_the_calling_thread_and_leaves_its_deadline_alone():
    threads: list[threading.Thread] = []

    def probe(request: Any) -> str:
        threads.append(threading.current_thread())
        time.sleep(0.05)
        return "done"

    assert run_action(_spec(probe), (None,), 0.001, in_place=True) == "done"
    assert threads == [threading.current_thread()]


def test_a_def_action_with_a_deadline_otherwise_gets_a_thread_of_its_own():
    release = threading.Event()
    threads: list[threading.Thread] = []

    def probe(request: Any) -> str:
        threads.append(threading.current_thread())
        release.wait(5)
        return "late"

    try:
        with pytest.raises(DeadlineExceeded):
            run_action(_spec(probe), (None,), 0.01)
    finally:
        release.set()
    assert threads
    assert threads[0] is not threading.current_thread()


@pytest.mark.parametrize("in_place", [True, False])
def test_an_async_def_action_is_cancelled_at_its_deadline_either_way(in_place):
    cancelled = threading.Event()

    async def probe(request: Any) -> str:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "late"

    with pytest.raises(DeadlineExceeded):
        run_action(_spec(probe), (None,), 0.01, in_place=in_place)
    assert cancelled.is_set()


def test_a_sync_action_runs_on_the_invocations_own_thread(stack):
    threads: list[threading.Thread] = []

    @stack.app.action("where")
    def where(request):
        threads.append(threading.current_thread())
        return "here"

    connection = stack.connect()
    assert stack.send(connection, {"action": "where", "id": "w"})["result"] == "here"
    assert threads == [threading.current_thread()]


def test_the_watchdog_answers_timeout_and_the_late_result_is_dropped(stack):
    @stack.app.action("overrun")
    def overrun(request):
        # The deadline comes due while the action still holds the invocation.
        assert stack.scheduler.fire() == 1
        return "too late"

    connection = stack.connect()
    event = stack.events.message(
        connection, '{"action":"overrun","id":"o"}', stack._principals[connection]
    )
    assert router.handler(event, stack.context()) == {"statusCode": 200}
    assert [(f["type"], f["request_id"], f["code"]) for f in stack.frames(connection)] == [
        ("error", "o", "TIMEOUT")
    ]


def test_the_watchdog_is_called_off_when_the_action_answers_in_time(stack):
    connection = stack.connect()
    reply = stack.send(connection, {"action": "echo", "id": "e", "payload": {"n": 1}})
    assert reply["type"] == "response"
    assert stack.scheduler.fire() == 0
    assert stack.frames(connection) == []


def test_a_watchdog_that_cannot_deliver_the_timeout_only_logs(stack, caplog):
    class Broken:
        def send(self, connection_ids: Any, data: str) -> Any:
            raise RuntimeError("management API down")

    stack.reconfigure(sender=Broken())

    @stack.app.action("overrun")
    def overrun(request):
        stack.scheduler.fire()
        return "too late"

    connection = stack.connect()
    event = stack.events.message(
        connection, '{"action":"overrun","id":"b"}', stack._principals[connection]
    )
    assert router.handler(event, stack.context()) == {"statusCode": 200}
    assert "could not send the timeout" in caplog.text


def test_a_last_attempt_without_time_leaves_a_request_another_worker_runs(stack):
    connection = stack.connect()
    stack.send(connection, {"action": "job", "id": "held"})
    key = stack.request_key("held")
    assert stack.runtime.storage.requests.claim(key, lease_seconds=600) is not None
    delivery = {"body": key.to_json(), "receive_count": 3, "message_id": "m-held"}
    short = stack.context(remaining_ms=_remaining_ms(-1))
    assert stack.process([delivery], short) == {"batchItemFailures": [{"itemIdentifier": "m-held"}]}
    assert _record(stack, "held").status == "PROCESSING"
    assert stack.frames(connection) == []


def _stuck_action(stack, fired: list[int]) -> None:
    @stack.app.action("job.stuck", asynchronous=True)
    def stuck(request, progress):
        # The watchdog's timer comes due while the action still holds the thread.
        fired.append(stack.scheduler.fire())
        return "too late"


def test_a_stuck_last_attempt_is_failed_by_the_watchdog(stack):
    fired: list[int] = []
    _stuck_action(stack, fired)
    connection = stack.connect()
    stack.send(connection, {"action": "job.stuck", "id": "stuck"})
    assert stack.drain(receive_count=3) == {"batchItemFailures": []}
    assert fired == [1]
    assert _record(stack, "stuck").status == "FAILED"
    assert [f["type"] for f in stack.frames(connection)] == ["error"]
    [error] = stack.frames(connection, "error")
    assert (error["request_id"], error["code"]) == ("stuck", "TIMEOUT")


def test_an_earlier_attempt_has_no_watchdog(stack):
    fired: list[int] = []
    _stuck_action(stack, fired)
    connection = stack.connect()
    stack.send(connection, {"action": "job.stuck", "id": "retryable"})
    assert stack.drain(receive_count=1) == {"batchItemFailures": []}
    assert fired == [0]
    assert _record(stack, "retryable").status == "COMPLETED"


def test_the_watchdog_is_called_off_when_the_last_attempt_ends(stack):
    connection = stack.connect()
    stack.send(connection, {"action": "job", "id": "calm", "payload": {"steps": 1}})
    assert stack.drain(receive_count=3) == {"batchItemFailures": []}
    assert stack.scheduler.fire() == 0
    assert _record(stack, "calm").status == "COMPLETED"
