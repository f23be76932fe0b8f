"""``streamer_handlers.testing.run_action``: an action run in-process, answered as a client sees it.

The first tests pin the double's own behaviour. The last ones run the same requests through the
real router and processor (on moto) and through the double, and require the client to see the
same thing from both, so the double cannot drift from the functions it stands in for.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from streamer_core import ErrorCode, ProgressFrame
from streamer_handlers import ActionError, Cancelled, ProgressReporter, Request, Streamer
from streamer_handlers.testing import Outcome, run_action


def _app() -> Streamer:
    app = Streamer()

    @app.action("echo")
    def echo(request: Request) -> Any:
        return {"payload": request.payload, "user": request.user_id, "tenant": request.tenant_id}

    @app.action("whoami")
    async def whoami(request: Request) -> Any:
        await asyncio.sleep(0)
        return {
            "id": request.id,
            "permissions": sorted(request.permissions),
            "metadata": request.metadata,
            "connection": request.connection_id,
        }

    @app.action("report", asynchronous=True, permissions={"reports:write"})
    def report(request: Request, progress: ProgressReporter) -> Any:
        steps = int(request.payload.get("steps", 4))
        for step in range(1, steps + 1):
            progress.report(step * 100 / steps, f"step {step}", step=step)
        return {"rows": steps * 10}

    @app.action("async.report", asynchronous=True)
    async def async_report(request: Request, progress: ProgressReporter) -> Any:
        progress.report(10, "started")
        await asyncio.sleep(0)
        progress.report(90, "almost")
        return "done"

    @app.action("validate")
    def validate(request: Request) -> Any:
        if "month" not in request.payload:
            raise ActionError(
                ErrorCode.VALIDATION_ERROR, "payload.month: required", {"field": "payload.month"}
            )
        return request.payload["month"]

    @app.action("crash")
    def crash(request: Request) -> Any:
        raise RuntimeError("database password is hunter2")

    @app.action("job.crash", asynchronous=True)
    def job_crash(request: Request, progress: ProgressReporter) -> Any:
        progress.report(30, "working")
        raise KeyError("internal detail")

    @app.action("not.json")
    def not_json(request: Request) -> Any:
        return {"when": object()}

    @app.action("job.not.json", asynchronous=True)
    def job_not_json(request: Request, progress: ProgressReporter) -> Any:
        return {1, 2}

    return app


APP = _app()


def _types(outcome: Outcome) -> list[str]:
    return [frame.type for frame in outcome.frames]


def test_a_sync_action_answers_its_result_to_the_caller_it_names() -> None:
    outcome = run_action(APP, "echo", {"text": "hi"}, user="alice", tenant="acme")
    assert outcome.ok
    assert outcome.error is None
    assert outcome.result == {"payload": {"text": "hi"}, "user": "alice", "tenant": "acme"}
    assert _types(outcome) == ["response"]
    assert outcome.progress == []


def test_the_request_carries_what_the_test_chose() -> None:
    outcome = run_action(
        APP,
        "whoami",
        request_id="req-7",
        permissions={"b", "a"},
        metadata={"trace": "t-1"},
        connection_id="conn-9=",
    )
    assert outcome.result == {
        "id": "req-7",
        "permissions": ["a", "b"],
        "metadata": {"trace": "t-1"},
        "connection": "conn-9=",
    }
    assert outcome.request is not None
    assert outcome.request.id == "req-7"
    assert outcome.frames[0].request_id == "req-7"


async def test_an_async_def_action_runs_from_a_test_that_runs_a_loop() -> None:
    outcome = run_action(APP, "whoami")
    assert outcome.ok
    outcome = run_action(APP, "async.report")
    assert outcome.result == "done"
    assert [p.message for p in outcome.progress] == ["started", "almost"]


def test_a_job_reports_every_progress_in_order_then_completes() -> None:
    outcome = run_action(APP, "report", {"steps": 4}, permissions={"reports:write"})
    assert outcome.ok
    assert outcome.result == {"rows": 40}
    assert _types(outcome) == ["acknowledgment", *["progress"] * 4, "complete"]
    assert [(p.seq, p.percentage, p.message, p.metadata) for p in outcome.progress] == [
        (1, 25.0, "step 1", {"step": 1}),
        (2, 50.0, "step 2", {"step": 2}),
        (3, 75.0, "step 3", {"step": 3}),
        (4, 100.0, "step 4", {"step": 4}),
    ]
    assert all(isinstance(p, ProgressFrame) for p in outcome.progress)


def test_no_report_is_dropped_however_fast_they_come() -> None:
    outcome = run_action(APP, "report", {"steps": 500}, permissions={"reports:write"})
    assert [p.seq for p in outcome.progress] == list(range(1, 501))
    assert outcome.progress[-1].percentage == 100.0


@pytest.mark.parametrize("action", ["report", "echo"])
def test_a_missing_permission_is_refused_before_the_action_runs(action: str) -> None:
    calls: list[str] = []
    app = Streamer()

    @app.action(action, asynchronous=action == "report", permissions={"reports:write", "x"})
    def guarded(*args: Any) -> Any:
        calls.append("ran")
        return "ran"

    outcome = run_action(app, action, permissions={"x", "reports:read"})
    assert not outcome.ok
    assert outcome.error is not None
    assert outcome.error.code is ErrorCode.FORBIDDEN
    assert outcome.error.details == {"missing": ["reports:write"]}
    assert _types(outcome) == ["error"]
    assert calls == []


def test_a_payload_the_router_refuses_never_reaches_the_action() -> None:
    outcome = run_action(APP, "echo", {"price": float("nan")})
    assert outcome.error is not None
    assert outcome.error.code is ErrorCode.VALIDATION_ERROR
    assert outcome.error.details == {"field": "payload.price"}
    assert outcome.request is None


def test_an_action_error_reaches_the_client_as_raised() -> None:
    outcome = run_action(APP, "validate", {"year": 2025})
    assert outcome.error is not None
    assert outcome.error.code is ErrorCode.VALIDATION_ERROR
    assert outcome.error.message == "payload.month: required"
    assert outcome.error.details == {"field": "payload.month"}
    assert isinstance(outcome.exception, ActionError)
    assert run_action(APP, "validate", {"month": "2025-10"}).result == "2025-10"


def test_an_unexpected_exception_is_an_internal_error_that_tells_nothing() -> None:
    outcome = run_action(APP, "crash")
    assert outcome.error is not None
    assert outcome.error.code is ErrorCode.INTERNAL_ERROR
    assert outcome.error.message == "internal error"
    assert "hunter2" not in json.dumps([f.model_dump(mode="json") for f in outcome.frames])
    assert isinstance(outcome.exception, RuntimeError)


def test_a_job_that_crashes_keeps_its_progress_and_fails() -> None:
    outcome = run_action(APP, "job.crash")
    assert _types(outcome) == ["acknowledgment", "progress", "error"]
    assert outcome.error is not None
    assert outcome.error.code is ErrorCode.INTERNAL_ERROR
    assert isinstance(outcome.exception, KeyError)


def test_a_result_that_is_not_json_is_an_internal_error() -> None:
    sync = run_action(APP, "not.json")
    job = run_action(APP, "job.not.json")
    assert sync.error is not None
    assert job.error is not None
    assert (sync.error.code, sync.error.message) == (ErrorCode.INTERNAL_ERROR, "internal error")
    assert (job.error.code, job.error.message) == (
        ErrorCode.INTERNAL_ERROR,
        "the action's result is not JSON",
    )


def test_a_cancel_stops_the_job_at_its_next_report() -> None:
    cleaned: list[bool] = []
    app = Streamer()

    @app.action("long", asynchronous=True)
    def long(request: Request, progress: ProgressReporter) -> Any:
        try:
            for step in range(10):
                progress.report(step * 10, f"step {step}")
        except Cancelled:
            cleaned.append(True)
            raise
        return "finished"

    outcome = run_action(app, "long", cancel_after=3)
    assert outcome.error is not None
    assert outcome.error.code is ErrorCode.CANCELLED
    assert [p.message for p in outcome.progress] == ["step 0", "step 1", "step 2"]
    assert cleaned == [True]
    assert isinstance(outcome.exception, Cancelled)


def test_an_action_past_its_own_timeout_is_a_timeout() -> None:
    release = threading.Event()
    app = Streamer()

    @app.action("stuck", timeout=0.01)
    def stuck(request: Request) -> Any:
        release.wait(30)
        return "late"

    try:
        outcome = run_action(app, "stuck")
    finally:
        release.set()
    assert outcome.error is not None
    assert outcome.error.code is ErrorCode.TIMEOUT
    assert outcome.exception is None


def test_unknown_and_built_in_actions_and_unsendable_payloads() -> None:
    outcome = run_action(APP, "nope")
    assert outcome.error is not None
    assert (outcome.error.code, outcome.error.details) == (ErrorCode.NOT_FOUND, {"field": "action"})
    with pytest.raises(ValueError, match="built-in"):
        run_action(APP, "ping")
    with pytest.raises(TypeError, match="JSON"):
        run_action(APP, "echo", {"when": object()})
    with pytest.raises(ValueError, match="whitespace"):
        run_action(APP, "echo", permissions={"two words"})


# ------------------------------------------------------------------ same answers as the functions

# (action, payload, permissions) sent through both paths; the stack's app is the suite's own.
CASES: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("echo", {"x": 1}, ()),
    ("echo", {"x": float("inf")}, ()),
    ("async.echo", {"y": [1, 2]}, ()),
    ("refuse", {}, ()),
    ("crash", {}, ()),
    ("not.json", {}, ()),
    ("admin.purge", {}, ()),
    ("admin.purge", {}, ("admin",)),
    ("missing.action", {}, ()),
    ("job", {"steps": 4}, ("reports:read",)),
    ("async.job", {}, ()),
    ("job.fails", {}, ()),
    ("job.crashes", {}, ()),
    ("job.slow", {}, ()),
    ("job.admin", {}, ()),
]


def _wire(frame: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = frame.model_dump(mode="json")
    return dumped


def _report(frame: dict[str, Any]) -> tuple[Any, ...]:
    return (frame["percentage"], frame["message"], frame["metadata"])


@pytest.mark.parametrize(("action", "payload", "permissions"), CASES)
def test_the_double_answers_what_the_router_and_processor_answer(
    stack: Any, action: str, payload: dict[str, Any], permissions: tuple[str, ...]
) -> None:
    request_id = f"same-{action}"
    connection = stack.connect("alice", "acme", permissions=list(permissions))
    reply = stack.send(connection, {"action": action, "id": request_id, "payload": payload})
    stack.drain(receive_count=stack.runtime.settings.max_receive_count)
    pushed = stack.frames(connection)

    outcome = run_action(
        stack.app,
        action,
        payload,
        user="alice",
        tenant="acme",
        permissions=permissions,
        request_id=request_id,
    )
    frames = [_wire(frame) for frame in outcome.frames]
    assert frames[0] == reply
    assert frames[-1] == (pushed[-1] if pushed else reply)
    # The functions coalesce reports that come too fast; the double keeps them all, so what
    # a client of the functions sees is a part of what the double reports, ending the same way.
    real = [_report(f) for f in pushed if f["type"] == "progress"]
    double = [_report(_wire(p)) for p in outcome.progress]
    remaining = iter(double)
    assert all(report in remaining for report in real)
    assert real[-1:] == double[-1:]
