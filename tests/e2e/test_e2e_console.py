"""`streamer dev`'s console: what it records, what its HTTP API answers, whom it refuses.

The recorder is checked against both invokers without a stack: log lines must reach the
invocation that wrote them, from threads of this process and from a worker's stderr, however
many run at once. The rest runs against one stack with the console on: connections with
their counts, invocations, jobs and topics as the state API and the event stream report
them, tokens minted and events published from the console, failures standing out, tokens
redacted, and the guard against other hosts and other sites. `streamer dev`'s own switches
(off on another address unless `--console`, then with a warning) run as subprocesses.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from e2e_support import (
    E2E_APP,
    REPLY_TIMEOUT,
    management_client,
    open_ws,
    receive,
    receive_for,
    send,
    stack_config,
    until_terminal,
)
from streamer_core.auth import TokenIssuer, generate_key_pair
from streamer_infra.local import DEV_ISSUER, BackgroundStack, DevKeys, LocalStack
from streamer_infra.local._console import console_enabled, is_loopback
from streamer_infra.local._console_recorder import Recorder, RecordingInvoker
from streamer_infra.local._invoker import LocalFunction, ThreadInvoker
from streamer_infra.local._processes import ArchiveRuntime, ProcessInvoker
from websockets.exceptions import InvalidStatus

TENANT = "acme"


# -- the switch ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("host", "requested", "served"),
    [
        ("127.0.0.1", None, True),
        ("::1", None, True),
        ("localhost", None, True),
        ("127.0.0.2", None, True),
        ("0.0.0.0", None, False),
        ("192.168.1.20", None, False),
        ("0.0.0.0", True, True),
        ("127.0.0.1", False, False),
    ],
)
def test_the_console_is_served_on_loopback_unless_told_otherwise(
    host: str, requested: bool | None, served: bool
) -> None:
    assert console_enabled(host, requested) is served


def test_only_loopback_names_are_loopback() -> None:
    assert all(is_loopback(name) for name in ("localhost", "app.localhost", "[::1]", "127.0.0.1"))
    assert not any(is_loopback(name) for name in ("", "0.0.0.0", "::", "example.com", "10.0.0.1"))


# -- the recorder against both invokers --------------------------------------------------------
async def test_log_lines_of_concurrent_thread_invocations_reach_their_own_invocation() -> None:
    # A child of the functions' logger, so its records pass the console's handler.
    log = logging.getLogger("streamer.console_test")

    def handler(event: dict[str, Any], context: Any) -> Any:
        log.warning("first line of %s", event["n"])
        time.sleep(0.05)  # overlap the other invocations
        log.warning("last line of %s", event["n"])
        if event["n"] == 3:
            raise ValueError("invocation 3 fails")
        return event["n"]

    recorder = Recorder()
    recorder.start()
    invoker = RecordingInvoker(ThreadInvoker(function_prefix="test"), recorder)
    function = LocalFunction("worker", handler, concurrency=8)
    try:
        outcomes = await asyncio.gather(*(invoker.invoke(function, {"n": n}) for n in range(6)))
    finally:
        invoker.shutdown()
        await recorder.close()
    assert [outcome.ok for outcome in outcomes] == [n != 3 for n in range(6)]
    records = sorted(recorder.invocations.values(), key=lambda r: json.loads(r.event_json)["n"])
    for n, record in enumerate(records):
        texts = [entry["text"] for entry in record.logs]
        assert texts[:2] == [f"first line of {n}", f"last line of {n}"], texts
        if n == 3:
            assert record.outcome == "error"
            assert (record.error_type, record.error_message) == ("ValueError", "invocation 3 fails")
            # The invoker's own traceback line, written on the same thread, is here too.
            assert any("invocation 3 fails" in text for text in texts[2:]), texts
        else:
            assert record.outcome == "ok"
            assert len(texts) == 2, texts


WORKER_HANDLERS = """
import json, sys, time
print("init line", file=sys.stderr)

def talk(event, context):
    n = event["n"]
    print(json.dumps({"level": "INFO", "message": f"first line of {n}", "n": n}), file=sys.stderr)
    time.sleep(0.05)
    print(f"plain line of {n}", file=sys.stderr)
    sys.stderr.write(f"unterminated line of {n}")
    if n == 2:
        raise RuntimeError("invocation 2 fails")
    return n
"""


@pytest.fixture
def worker_runtime(tmp_path: Path) -> ArchiveRuntime:
    task_root = tmp_path / "task"
    (task_root / "app").mkdir(parents=True)
    (task_root / "app" / "__init__.py").write_text("")
    (task_root / "app" / "handlers.py").write_text(textwrap.dedent(WORKER_HANDLERS))
    runtime_dir = tmp_path / "runtime"
    runtime_dir.mkdir()
    return ArchiveRuntime(
        python=Path(sys.executable), task_root=task_root, runtime_dir=runtime_dir, environment={}
    )


async def test_worker_stderr_reaches_the_invocation_that_wrote_it_and_this_stderr(
    worker_runtime: ArchiveRuntime, capfd: pytest.CaptureFixture[str]
) -> None:
    def never(event: dict[str, Any], context: Any) -> Any:
        raise AssertionError("an archive function must not run in the test process")

    recorder = Recorder()
    recorder.start()
    inner = ProcessInvoker(worker_runtime, function_prefix="test")
    invoker = RecordingInvoker(inner, recorder)
    function = LocalFunction("talk", never, concurrency=3, entry="app.handlers.talk")
    try:
        # Three at once (three workers), then three more on the same, now warm, workers.
        first = await asyncio.gather(*(invoker.invoke(function, {"n": n}) for n in range(3)))
        second = await asyncio.gather(*(invoker.invoke(function, {"n": n}) for n in range(3, 6)))
    finally:
        await inner.aclose()
        await recorder.close()
    outcomes = [*first, *second]
    assert [outcome.ok for outcome in outcomes] == [n != 2 for n in range(6)]
    assert inner.cold_starts == {"talk": 3}
    records = sorted(recorder.invocations.values(), key=lambda r: json.loads(r.event_json)["n"])
    for n, record in enumerate(records):
        # The invoker's own lines about the invocation (a cold start) may come with them.
        texts = [
            e["text"] for e in record.logs if re.fullmatch(r"init line|.*line of \d", e["text"])
        ]
        own = [f"first line of {n}", f"plain line of {n}", f"unterminated line of {n}"]
        # A cold start's init phase belongs to the invocation that caused it.
        assert texts == (["init line", *own] if n < 3 else own), texts
        [structured] = [entry for entry in record.logs if entry["text"] == own[0]]
        assert (structured["level"], structured["extra"]) == ("INFO", {"n": n})
    assert records[2].outcome == "error"
    assert records[2].error_message == "invocation 2 fails"
    # The invoker's report of the failure, written on the event loop, is the invocation's too.
    assert any("RuntimeError: invocation 2 fails" in e["text"] for e in records[2].logs)
    # Every line still reaches this process's stderr, as the worker's own stderr did.
    err = capfd.readouterr().err
    for n in range(6):
        assert f"plain line of {n}" in err


# -- one stack with the console ------------------------------------------------------------------
@pytest.fixture(scope="module")
def console_stack(
    e2e_keys: DevKeys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    # None: served because the stack listens on loopback, as `streamer dev`'s default.
    config = stack_config(e2e_keys, tmp_path_factory.mktemp("stack"), console=None)
    with BackgroundStack(config) as stack:
        yield stack


@pytest.fixture
async def http(console_stack: LocalStack) -> AsyncIterator[aiohttp.ClientSession]:
    assert console_stack.console_url is not None
    async with aiohttp.ClientSession(base_url=console_stack.console_url) as session:
        yield session


async def _state(http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.get("/_console/api/state") as response:
        assert response.status == 200
        state: dict[str, Any] = await response.json()
        return state


async def _until(http: aiohttp.ClientSession, what: str, check: Any) -> dict[str, Any]:
    """The state once `check(state)` holds."""
    deadline = time.monotonic() + REPLY_TIMEOUT
    while True:
        state = await _state(http)
        if check(state):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}\nstate: {json.dumps(state)[:4000]}")
        await asyncio.sleep(0.05)


def _of_user(state: dict[str, Any], user: str) -> list[dict[str, Any]]:
    return [c for c in state["connections"] if c["user"] == user]


async def test_the_page_its_files_and_the_built_client_are_served(
    console_stack: LocalStack, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    for path in ("/", "/_console/"):
        async with http.get(path) as response:
            assert response.status == 200
            assert response.content_type == "text/html"
            assert "Streamer console" in await response.text()
    async with http.get("/_console/static/console.js") as response:
        assert (response.status, response.content_type) == (200, "text/javascript")
    async with http.get("/_console/static/missing.js") as response:
        assert response.status == 404

    console = console_stack.console
    assert console is not None
    built = tmp_path / "dist"
    built.mkdir()
    (built / "index.js").write_text("export const built = true;\n")
    (tmp_path / "secret.js").write_text("outside dist")
    saved = console._client_dir
    try:
        console._client_dir = built
        async with http.get("/_console/client/index.js") as response:
            assert (response.status, response.content_type) == (200, "text/javascript")
            assert "built = true" in await response.text()
        async with http.get("/_console/client/..%2Fsecret.js") as response:
            assert response.status == 404
        assert (await _state(http))["stack"]["client"]["available"] is True

        # Without a build, the console says how to make one.
        (built / "index.js").unlink()
        async with http.get("/_console/client/index.js") as response:
            assert response.status == 404
            assert "npm ci && npm run build" in (await response.json())["error"]
        client = (await _state(http))["stack"]["client"]
        assert client["available"] is False
        assert client["build"] == "cd packages/streamer-client-js && npm ci && npm run build"
    finally:
        console._client_dir = saved


async def test_a_connection_its_invocations_its_job_and_its_topic(
    console_stack: LocalStack, http: aiohttp.ClientSession
) -> None:
    ws = await open_ws(console_stack, console_stack.token("ann", TENANT, ["reports:write"]))
    try:
        await send(ws, "echo", {"hi": 1}, id="echo-ann")
        await receive_for(ws, "echo-ann")
        await send(ws, "generate_report", {"steps": 3, "title": "t"}, id="job-ann")
        frames = await until_terminal(ws, "job-ann")
        await send(ws, "subscribe", {"topic": "news"}, id="sub-ann")
        await receive_for(ws, "sub-ann")

        state = await _until(
            http,
            "ann's job, topic and message counts",
            lambda s: (
                any(j["request_id"] == "job-ann" for j in s["jobs"])
                and any(t["topic"] == "news" for t in s["topics"])
                and any(c["messages_out"] >= len(frames) + 2 for c in _of_user(s, "ann"))
            ),
        )
    finally:
        await ws.close()

    [connection] = _of_user(state, "ann")
    assert (connection["tenant"], connection["permissions"]) == (TENANT, ["reports:write"])
    assert connection["closed_at"] is None
    assert connection["messages_in"] == 3
    assert connection["messages_out"] == len(frames) + 2

    [job] = [j for j in state["jobs"] if j["request_id"] == "job-ann"]
    assert (job["action"], job["status"], job["percentage"]) == (
        "generate_report",
        "COMPLETED",
        100,
    )
    assert (job["user"], job["tenant"]) == ("ann", TENANT)
    assert json.loads(job["result"])["rows"] == 30
    assert job["seq"] == max(f["seq"] for f in frames if f["type"] == "progress")

    [topic] = [t for t in state["topics"] if (t["tenant"], t["topic"]) == (TENANT, "news")]
    assert topic["subscribers"] == 1
    assert topic["connections"] == [connection["id"]]

    mine = [i for i in state["invocations"] if i["connection_id"] == connection["id"]]
    routes = [(i["function"], i["route"], i["kind"]) for i in mine]
    assert ("connect", "$connect", "authorizer") in routes
    assert ("connect", "$connect", "") in routes
    for action in ("echo", "generate_report", "subscribe"):
        [served] = [i for i in mine if i["action"] == action]
        assert (served["function"], served["outcome"]) == ("router", "ok")
        assert served["duration_ms"] is not None
    processed = [i for i in state["invocations"] if "job-ann" in i["request_ids"]]
    assert {i["function"] for i in processed} == {"router", "processor"}

    # The close: recorded with its code, and `$disconnect` ran and emptied the topic.
    state = await _until(
        http,
        "ann's close and its $disconnect",
        lambda s: (
            _of_user(s, "ann")[0]["closed_at"] is not None
            and not any(t["topic"] == "news" for t in s["topics"])
        ),
    )
    assert _of_user(state, "ann")[0]["close_code"] == 1000


async def test_a_failure_stands_out_and_a_refused_token_says_why(
    console_stack: LocalStack, http: aiohttp.ClientSession
) -> None:
    ws = await open_ws(console_stack, console_stack.token("bo", TENANT))
    try:
        await send(ws, "explode", id="boom-1")
        assert (await receive_for(ws, "boom-1"))["code"] == "INTERNAL_ERROR"
        await send(ws, "audit", id="audit-1")
        assert (await receive_for(ws, "audit-1"))["code"] == "FORBIDDEN"
    finally:
        await ws.close()
    other_key, _ = generate_key_pair()
    forged = TokenIssuer(other_key, issuer=DEV_ISSUER).issue("mallory", TENANT)
    with pytest.raises(InvalidStatus):
        await open_ws(console_stack, forged)

    def served(state: dict[str, Any], frame_id: str) -> dict[str, Any] | None:
        found = [i for i in state["invocations"] if frame_id in i["request_ids"]]
        return found[0] if found else None

    state = await _until(
        http,
        "the explode reply and the refusal",
        lambda s: (
            (served(s, "boom-1") or {}).get("reply_error") is not None
            and (served(s, "audit-1") or {}).get("reply_error") is not None
            and bool(s["refused"])
        ),
    )
    boom = served(state, "boom-1")
    assert boom is not None
    # The router caught the exception (the client got its error frame), but it logged it.
    assert boom["errors_logged"] >= 1
    assert boom["reply_error"]["code"] == "INTERNAL_ERROR"
    logged = next(entry for entry in boom["logs"] if entry["level"] == "ERROR")
    assert "the explode action always fails" in logged["extra"]["exception"]
    audit = served(state, "audit-1")
    assert audit is not None
    assert (audit["errors_logged"], audit["reply_error"]["code"]) == (0, "FORBIDDEN")

    refusal = state["refused"][0]
    assert (refusal["status"], refusal["message"]) == (401, "Unauthorized")
    [authorizer] = [i for i in state["invocations"] if i["id"] == refusal["invocation_id"]]
    assert (authorizer["kind"], authorizer["outcome"], authorizer["status"]) == (
        "authorizer",
        "refused",
        401,
    )
    # Why, as the function says it when it logs at INFO; its error otherwise.
    assert refusal["reason"] in ("bad_signature", "Unauthorized")


async def test_tokens_are_redacted_everywhere_the_console_shows_them(
    console_stack: LocalStack, http: aiohttp.ClientSession
) -> None:
    token = console_stack.token("cy", TENANT)
    ws = await open_ws(console_stack, token)
    try:
        await send(ws, "echo", {"leaked": token}, id="leak-1")
        await receive_for(ws, "leak-1")
    finally:
        await ws.close()
    state = await _until(
        http,
        "the echo's invocation",
        lambda s: any(
            "leak-1" in i["request_ids"] and i["outcome"] == "ok" for i in s["invocations"]
        ),
    )
    [echo] = [i for i in state["invocations"] if "leak-1" in i["request_ids"]]
    async with http.get(f"/_console/api/invocations/{echo['id']}") as response:
        detail = await response.text()
    signature = token.rsplit(".", 1)[1]
    for text in (json.dumps(state), detail):
        assert signature not in text
    assert "[REDACTED]" in detail


async def test_the_event_stream_starts_with_a_snapshot_then_pushes_changes(
    console_stack: LocalStack, http: aiohttp.ClientSession
) -> None:
    async with http.get("/_console/api/events") as response:
        assert response.content_type == "text/event-stream"

        async def next_event() -> tuple[str, dict[str, Any]]:
            kind, data = "", ""
            while True:
                line = (await asyncio.wait_for(response.content.readline(), REPLY_TIMEOUT)).decode()
                if line.startswith("event: "):
                    kind = line[7:].strip()
                elif line.startswith("data: "):
                    data += line[6:].strip()
                elif line == "\n" and kind:
                    return kind, json.loads(data)

        kind, snapshot = await next_event()
        assert kind == "snapshot"
        assert snapshot["stack"]["ws_url"] == console_stack.ws_url
        assert set(snapshot["state"]) >= {"invocations", "connections", "jobs", "topics"}

        ws = await open_ws(console_stack, console_stack.token("dee", TENANT))
        try:
            await send(ws, "echo", {}, id="pushed-1")
            await receive_for(ws, "pushed-1")
            pushed: list[dict[str, Any]] = []
            while not any("pushed-1" in i["request_ids"] and i["outcome"] == "ok" for i in pushed):
                kind, update = await next_event()
                assert kind == "update"
                pushed += update.get("invocations", [])
        finally:
            await ws.close()
    assert any(i["route"] == "$connect" for i in pushed)


async def test_a_minted_token_connects_and_a_publish_reaches_its_subscriber(
    console_stack: LocalStack, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        "/_console/api/token",
        json={"user": "eve", "tenant": TENANT, "permissions": ["reports:write"]},
    ) as response:
        assert response.status == 200
        minted = await response.json()
    assert minted["url"] == console_stack.ws_url
    ws = await open_ws(console_stack, minted["token"])
    try:
        await send(ws, "subscribe", {"topic": "alerts"}, id="sub-eve")
        await receive_for(ws, "sub-eve")
        async with http.post(
            "/_console/api/publish", json={"tenant": TENANT, "topic": "alerts", "data": {"n": 7}}
        ) as response:
            assert response.status == 200
            assert await response.json() == {
                "tenant": TENANT,
                "topic": "alerts",
                "delivered": 1,
                "gone": 0,
                "failed": 0,
            }
        event = await receive(ws)
        assert (event["type"], event["topic"], event["data"]) == ("event", "alerts", {"n": 7})
        state = await _state(http)
        [connection] = [c for c in _of_user(state, "eve") if c["closed_at"] is None]
        assert connection["permissions"] == ["reports:write"]
    finally:
        await ws.close()

    async with http.post(
        "/_console/api/publish", json={"tenant": TENANT, "topic": "no spaces allowed"}
    ) as response:
        assert response.status == 400
    async with http.post("/_console/api/token", json={"user": "", "tenant": TENANT}) as response:
        assert response.status == 400


async def test_the_management_apis_delete_shows_as_a_close(
    console_stack: LocalStack, http: aiohttp.ClientSession
) -> None:
    ws = await open_ws(console_stack, console_stack.token("fay", TENANT))
    try:
        state = await _until(http, "fay's connection", lambda s: bool(_of_user(s, "fay")))
        [connection] = _of_user(state, "fay")
        await asyncio.to_thread(
            management_client(console_stack).delete_connection, ConnectionId=connection["id"]
        )
        state = await _until(
            http, "fay's close", lambda s: _of_user(s, "fay")[0]["closed_at"] is not None
        )
    finally:
        await ws.close()
    [closed] = _of_user(state, "fay")
    assert (closed["close_code"], closed["close_reason"]) == (1000, "Connection deleted")


async def test_other_hosts_and_other_sites_are_refused(
    console_stack: LocalStack, http: aiohttp.ClientSession
) -> None:
    # A name of another site resolving to 127.0.0.1 (DNS rebinding) reads nothing.
    async with http.get("/_console/api/state", headers={"Host": "evil.example"}) as response:
        assert response.status == 403
    async with http.get("/", headers={"Host": "evil.example"}) as response:
        assert response.status == 403
    body = json.dumps({"user": "u", "tenant": TENANT})
    # A form of another site can post text/plain without asking: refused.
    async with http.post(
        "/_console/api/token", data=body, headers={"Content-Type": "text/plain"}
    ) as response:
        assert response.status == 415
    async with http.post(
        "/_console/api/token",
        data=body,
        headers={"Content-Type": "application/json", "Origin": "http://evil.example"},
    ) as response:
        assert response.status == 403
    origin = console_stack.console_url
    assert origin is not None
    async with http.post(
        "/_console/api/token",
        data=body,
        headers={"Content-Type": "application/json", "Origin": origin.rstrip("/")},
    ) as response:
        assert response.status == 200


# -- streamer dev's switches ---------------------------------------------------------------------
async def _banner_of(*args: str, state_dir: Path) -> tuple[str, subprocess.Popen[str]]:
    process = await asyncio.to_thread(
        subprocess.Popen,
        [
            sys.executable,
            "-m",
            "streamer_infra.cli",
            "dev",
            "--port",
            "0",
            "--state-dir",
            str(state_dir),
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        cwd=Path(__file__).parent,
    )
    assert process.stdout is not None
    banner = ""
    while "Press Ctrl-C" not in banner:
        line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 60)
        if not line:
            break
        banner += line
    return banner, process


async def _stop(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        _, err = await asyncio.to_thread(process.communicate, timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = await asyncio.to_thread(process.communicate)
    return err


async def test_streamer_dev_on_another_address_serves_the_console_only_when_told(
    tmp_path: Path,
) -> None:
    runs = {
        "all": ("--host", "0.0.0.0", "--app", E2E_APP),
        "forced": ("--host", "0.0.0.0", "--console", "--app", E2E_APP),
    }
    started = await asyncio.gather(
        *(_banner_of(*args, state_dir=tmp_path / name) for name, args in runs.items())
    )
    banners = {}
    try:
        for name, (banner, _) in zip(runs, started, strict=True):
            banners[name] = banner
            url = re.search(r"Console:\s+(http\S+)", banner)
            ws = re.search(r"WebSocket URL:\s+ws://[^:]+:(\d+)/", banner)
            assert ws, banner
            port = ws.group(1)
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/") as response,
            ):
                status = response.status
            if name == "forced":
                assert url, banner
                assert url.group(1) == f"http://127.0.0.1:{port}/"
                assert status == 200
            else:
                assert not url, banner
                assert status == 404
    finally:
        await asyncio.gather(*(_stop(process) for _, process in started))
    assert "Console:              off (not a loopback address" in banners["all"]
    assert "Warning: the console is reachable from other machines" in banners["forced"]
