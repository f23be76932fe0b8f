"""Deadlines: an action stops before Lambda ends the invocation, and a stuck pool says so."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from streamer_handlers import Streamer, execution
from streamer_handlers.execution import ActionThreadsExhausted, DeadlineExceeded, run_action
from streamer_handlers.processing import PROCESSOR_MARGIN_SECONDS


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


@pytest.fixture
def one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """A pool of a single action thread, released (and dropped) when the test ends."""
    release = threading.Event()
    monkeypatch.setattr(execution, "MAX_ACTION_THREADS", 1)
    monkeypatch.setattr(execution, "_pool", None)
    try:
        yield release
    finally:
        release.set()
        pool = execution._pool
        if pool is not None:
            pool.shutdown(wait=True)
        monkeypatch.setattr(execution, "_pool", None)


def _spec(func: Any) -> Any:
    app = Streamer()
    app.action("probe")(func)
    return app["probe"]


def test_an_action_that_never_got_a_thread_is_not_reported_as_a_timeout(one_thread):
    started = threading.Event()

    def occupy() -> None:
        started.set()
        one_thread.wait(5)

    execution._executor().submit(occupy)
    assert started.wait(5)
    ran: list[str] = []
    with pytest.raises(ActionThreadsExhausted, match="not started"):
        run_action(_spec(lambda request: ran.append("ran")), (None,), 0.01)
    assert ran == []


def test_a_pool_held_by_overrun_actions_refuses_new_ones_at_once(one_thread):
    stuck = _spec(lambda request: one_thread.wait(5))
    with pytest.raises(DeadlineExceeded):
        run_action(stuck, (None,), 0.01)
    assert execution.stuck_threads() == 1
    with pytest.raises(ActionThreadsExhausted, match="held by overrun actions"):
        run_action(_spec(lambda request: "fresh"), (None,), 1)
    one_thread.set()
    execution._executor().shutdown(wait=True)
    assert execution.stuck_threads() == 0


def test_the_router_answers_internal_error_when_no_action_thread_is_free(stack, one_thread):
    started = threading.Event()

    def occupy() -> None:
        started.set()
        one_thread.wait(5)

    execution._executor().submit(occupy)
    assert started.wait(5)
    stack.reconfigure(sync_timeout=0.01)
    connection = stack.connect()
    reply = stack.send(connection, {"action": "echo", "id": "starved"})
    assert (reply["type"], reply["code"], reply["request_id"]) == (
        "error",
        "INTERNAL_ERROR",
        "starved",
    )


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


def test_queued_jobs_never_wait_for_the_routers_action_threads(stack, one_thread):
    started = threading.Event()

    def occupy() -> None:
        started.set()
        one_thread.wait(5)

    execution._executor().submit(occupy)
    assert started.wait(5)
    connection = stack.connect()
    stack.send(connection, {"action": "job", "id": "own", "payload": {"steps": 1}})
    assert stack.drain(context=stack.context(remaining_ms=_remaining_ms(1))) == {
        "batchItemFailures": []
    }
    assert _record(stack, "own").status == "COMPLETED"
