"""The archive runner's worker processes, on a small task root written by each test.

What matters is that a worker sees only what Lambda's runtime would give it: the task root,
the runtime's packages, the function's variables and Lambda's own, one invocation at a time,
and a fresh environment after a timeout or a crash.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from streamer_infra.local._invoker import LocalFunction
from streamer_infra.local._processes import ArchiveRuntime, ProcessInvoker, trace_header

HANDLERS = """
import json, os, sys, time

def context(event, context):
    return {
        "function_name": context.function_name,
        "memory": context.memory_limit_in_mb,
        "remaining": context.get_remaining_time_in_millis(),
        "request_id": context.aws_request_id,
        "arn": context.invoked_function_arn,
        "env": {k: os.environ.get(k) for k in event["names"]},
        "path": sys.path,
        "pid": os.getpid(),
    }

def pid(event, context):
    time.sleep(event.get("sleep", 0))
    return os.getpid()

def fail(event, context):
    raise ValueError("bad input " + event.get("token", ""))

def crash(event, context):
    os._exit(3)

def unmarshallable(event, context):
    return {1, 2}

def import_from_dev(event, context):
    import moto  # in the development environment, never in an archive
    return "imported"
"""


@pytest.fixture
def runtime(tmp_path: Path) -> ArchiveRuntime:
    task_root = tmp_path / "task"
    (task_root / "app").mkdir(parents=True)
    (task_root / "app" / "__init__.py").write_text("")
    (task_root / "app" / "handlers.py").write_text(textwrap.dedent(HANDLERS))
    (task_root / "app" / "broken.py").write_text("import module_the_archive_lacks\n")
    runtime_dir = tmp_path / "runtime"
    runtime_dir.mkdir()
    return ArchiveRuntime(
        python=Path(sys.executable),
        task_root=task_root,
        runtime_dir=runtime_dir,
        environment={"STREAMER_ENV": "test", "AWS_LAMBDA_FUNCTION_NAME": "overridden"},
    )


def function(entry: str, *, timeout: float = 20, concurrency: int = 4) -> LocalFunction:
    name = entry.rpartition(".")[2]

    def never(event: dict[str, Any], context: Any) -> Any:
        raise AssertionError("an archive function must not run in the test process")

    return LocalFunction(
        name, never, timeout=timeout, memory=1024, concurrency=concurrency, entry=entry
    )


async def test_a_worker_sees_the_archive_the_runtime_and_lambdas_variables_only(
    runtime: ArchiveRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHELL_ONLY_VARIABLE", "from the developer's shell")
    invoker = ProcessInvoker(runtime, function_prefix="streamer-test")
    names = [
        "STREAMER_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "LAMBDA_TASK_ROOT",
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "SHELL_ONLY_VARIABLE",
    ]
    try:
        outcome = await invoker.invoke(function("app.handlers.context"), {"names": names})
    finally:
        await invoker.aclose()
    assert outcome.ok, outcome
    result = outcome.result
    assert result["function_name"] == "streamer-test-context"
    assert result["memory"] == 1024
    assert 0 < result["remaining"] <= 20_000
    assert result["request_id"] == outcome.request_id
    assert result["arn"].endswith(":function:streamer-test-context")
    env = result["env"]
    assert env["STREAMER_ENV"] == "test"
    # Lambda's own variables win over the function's, as on AWS.
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "streamer-test-context"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "1024"
    assert env["LAMBDA_TASK_ROOT"] == str(runtime.task_root)
    assert env["_HANDLER"] == "app.handlers.context"
    assert env["_X_AMZN_TRACE_ID"].startswith("Root=1-")
    assert env["SHELL_ONLY_VARIABLE"] is None
    path = result["path"]
    assert path[0] == str(runtime.task_root)
    assert path[-1] == str(runtime.runtime_dir)
    assert not any("site-packages" in entry for entry in path)


async def test_a_package_of_the_development_environment_is_not_importable(
    runtime: ArchiveRuntime,
) -> None:
    invoker = ProcessInvoker(runtime, function_prefix="streamer-test")
    try:
        outcome = await invoker.invoke(function("app.handlers.import_from_dev"), {})
    finally:
        await invoker.aclose()
    assert outcome.error_type == "ModuleNotFoundError"
    assert "moto" in (outcome.error_message or "")


async def test_a_handler_whose_import_fails_fails_every_invocation_like_lambda(
    runtime: ArchiveRuntime,
) -> None:
    invoker = ProcessInvoker(runtime, function_prefix="streamer-test")
    try:
        first = await invoker.invoke(function("app.broken.handler"), {})
        second = await invoker.invoke(function("app.broken.handler"), {})
        missing = await invoker.invoke(function("app.handlers.no_such_function"), {})
    finally:
        await invoker.aclose()
    for outcome in (first, second):
        assert outcome.error_type == "Runtime.ImportModuleError"
        assert "module_the_archive_lacks" in (outcome.error_message or "")
    assert missing.error_type == "AttributeError"


async def test_one_invocation_at_a_time_per_worker_and_warm_workers_are_reused(
    runtime: ArchiveRuntime,
) -> None:
    invoker = ProcessInvoker(runtime, function_prefix="streamer-test")
    pid = function("app.handlers.pid")
    try:
        first = await invoker.invoke(pid, {})
        second = await invoker.invoke(pid, {})
        assert first.result == second.result  # warm: the same environment
        assert invoker.cold_starts["pid"] == 1
        together = await asyncio.gather(*(invoker.invoke(pid, {"sleep": 0.5}) for _ in range(3)))
    finally:
        await invoker.aclose()
    assert len({outcome.result for outcome in together}) == 3
    assert invoker.cold_starts["pid"] == 3


async def test_concurrency_bounds_the_number_of_workers(runtime: ArchiveRuntime) -> None:
    invoker = ProcessInvoker(runtime, function_prefix="streamer-test")
    pid = function("app.handlers.pid", concurrency=1)
    try:
        together = await asyncio.gather(*(invoker.invoke(pid, {"sleep": 0.1}) for _ in range(3)))
    finally:
        await invoker.aclose()
    assert all(outcome.ok for outcome in together)
    assert len({outcome.result for outcome in together}) == 1
    assert invoker.cold_starts["pid"] == 1


async def test_errors_are_reported_with_lambdas_types_and_redacted_in_the_log(
    runtime: ArchiveRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl"
    invoker = ProcessInvoker(runtime, function_prefix="streamer-test")
    try:
        failed = await invoker.invoke(function("app.handlers.fail"), {"token": token})
        unmarshallable = await invoker.invoke(function("app.handlers.unmarshallable"), {})
    finally:
        await invoker.aclose()
    assert failed.error_type == "ValueError"
    assert unmarshallable.error_type == "Runtime.MarshalError"
    assert "ValueError" in caplog.text
    assert token not in caplog.text


async def test_a_timeout_or_a_crash_ends_the_environment_and_the_next_call_starts_fresh(
    runtime: ArchiveRuntime,
) -> None:
    invoker = ProcessInvoker(runtime, function_prefix="streamer-test")
    slow = function("app.handlers.pid", timeout=0.5)
    crash = function("app.handlers.crash")
    try:
        timed_out = await invoker.invoke(slow, {"sleep": 5})
        after = await invoker.invoke(slow, {})
        crashed = await invoker.invoke(crash, {})
        crashed_again = await invoker.invoke(crash, {})
    finally:
        await invoker.aclose()
    assert timed_out.error_type == "Sandbox.Timedout"
    assert after.ok
    assert invoker.cold_starts["pid"] == 2
    assert crashed.error_type == crashed_again.error_type == "Runtime.ExitError"
    assert invoker.cold_starts["crash"] == 2


def test_trace_headers_are_sampled_and_unique() -> None:
    first, second = trace_header(), trace_header()
    assert first != second
    root, parent, sampled = first.split(";")
    assert root.startswith("Root=1-")
    assert len(root.split("-")[2]) == 24
    assert parent.startswith("Parent=")
    assert len(parent) == len("Parent=") + 16
    assert sampled == "Sampled=1"
