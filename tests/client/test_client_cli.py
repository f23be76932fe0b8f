"""The command line, run in-process against the scripted server.

``main`` owns its event loop (``asyncio.run``), so it runs in a worker thread while the scripted
server keeps serving on the test's loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys

import pytest
from client_fakes import (
    WAIT,
    FakeConnection,
    FakeServer,
    ack,
    answer_basics,
    complete,
    error,
    event,
    progress,
    subscribed,
)
from streamer_client import cli
from streamer_client.cli import main


async def _run(*argv: str) -> int:
    return await asyncio.wait_for(asyncio.to_thread(main, list(argv)), WAIT)


async def _job_script(conn: FakeConnection) -> None:
    frame = await conn.recv()
    rid = frame["id"]
    await conn.send(ack(rid, frame["action"]))
    await conn.send(progress(rid, 1, 50.0, "halfway"))
    await conn.send(progress(rid, 2, 100.0, "writing"))
    await conn.send(complete(rid, {"report": "ready"}))


async def test_request_prints_the_result(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.script = answer_basics
    code = await _run("--url", server.url, "--token", "t", "request", "echo", '{"text": "hi"}')
    out, err = capsys.readouterr()
    assert code == 0
    assert json.loads(out) == {"text": "hi"}
    assert err == ""
    assert server.handshakes[0]["Authorization"] == "Bearer t"


async def test_request_shows_progress_then_the_result(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.script = _job_script
    code = await _run("--url", server.url, "request", "generate_report")
    out, err = capsys.readouterr()
    assert code == 0
    assert json.loads(out) == {"report": "ready"}
    lines = err.splitlines()
    assert len(lines) == 2
    assert "50.0%" in lines[0]
    assert "halfway" in lines[0]
    assert "100.0%" in lines[1]


async def test_json_mode_prints_raw_frames(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.script = _job_script
    code = await _run("--url", server.url, "--json", "request", "generate_report", "{}")
    out, err = capsys.readouterr()
    assert code == 0
    frames = [json.loads(line) for line in out.splitlines()]
    assert [frame["type"] for frame in frames] == [
        "acknowledgment",
        "progress",
        "progress",
        "complete",
    ]
    assert len({frame["request_id"] for frame in frames}) == 1
    assert err == ""


async def test_url_and_token_come_from_the_environment(
    server: FakeServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server.script = answer_basics
    monkeypatch.setenv("STREAMER_URL", server.url)
    monkeypatch.setenv("STREAMER_TOKEN", "from-env")
    assert await _run("request", "echo", '{"a": 1}') == 0
    assert json.loads(capsys.readouterr().out) == {"a": 1}
    assert server.handshakes[0]["Authorization"] == "Bearer from-env"


async def test_remote_error_is_one_line_and_exit_1(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    async def script(conn: FakeConnection) -> None:
        frame = await conn.recv()
        await conn.send(error(frame["id"], "FORBIDDEN", "needs reports:write"))

    server.script = script
    code = await _run("--url", server.url, "request", "generate_report")
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert err.strip().splitlines() == ["streamer-client: error: FORBIDDEN: needs reports:write"]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["request", "echo", "{not json"], "not valid JSON"),
        (["request", "echo", "[1, 2]"], "must be a JSON object"),
        (["request"], "arguments are required"),
        (["dance"], "invalid choice"),
    ],
)
async def test_usage_errors_are_one_line_and_exit_2(
    server: FakeServer, capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    code = await _run("--url", server.url, *argv)
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    [line] = err.strip().splitlines()
    assert fragment in line
    assert server.handshakes == []


async def test_missing_url_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STREAMER_URL", raising=False)
    assert await _run("request", "echo") == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "STREAMER_URL" in line


async def test_unreachable_server_is_one_line_and_exit_3(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = await _run("--url", "ws://127.0.0.1:9/", "request", "echo")
    out, err = capsys.readouterr()
    assert code == 3
    assert out == ""
    [line] = err.strip().splitlines()
    assert line.startswith("streamer-client: connection error: cannot connect")
    assert "Traceback" not in err


async def test_rejected_token_is_one_line_and_exit_3(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.reject_with = 401
    code = await _run("--url", server.url, "--token", "expired", "request", "echo")
    err = capsys.readouterr().err
    assert code == 3
    [line] = err.strip().splitlines()
    assert "HTTP 401" in line
    assert "expired" not in line


async def test_timeout_is_one_line_and_exit_4(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    async def script(conn: FakeConnection) -> None:
        frame = await conn.recv()
        await conn.send(ack(frame["id"]))

    server.script = script
    code = await _run("--url", server.url, "--timeout", "0.05", "request", "work")
    err = capsys.readouterr().err
    assert code == 4
    assert len(err.strip().splitlines()) == 1


async def test_subscribe_prints_events(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    async def script(conn: FakeConnection) -> None:
        frame = await conn.recv_action("subscribe")
        await conn.send(subscribed(frame["id"], "news"))
        await conn.send(event("news", {"n": 1}, "E1"))
        await conn.send(event("news", {"n": 2}, "E2"))
        await answer_basics(conn)

    server.script = script
    code = await _run("--url", server.url, "subscribe", "news", "--count", "2")
    out, err = capsys.readouterr()
    assert code == 0
    assert [json.loads(line) for line in out.splitlines()] == [{"n": 1}, {"n": 2}]
    assert "subscribed to news" in err


async def test_subscribe_json_mode_prints_raw_frames(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    async def script(conn: FakeConnection) -> None:
        frame = await conn.recv_action("subscribe")
        await conn.send(subscribed(frame["id"], "news"))
        await conn.send(event("news", "x", "E1"))
        await answer_basics(conn)

    server.script = script
    code = await _run("--url", server.url, "--json", "subscribe", "news", "--count", "1")
    out = capsys.readouterr().out
    assert code == 0
    assert [json.loads(line)["type"] for line in out.splitlines()] == [
        "subscribed",
        "event",
        "unsubscribed",
    ]


async def test_subscribe_timeout_exits_4(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.script = answer_basics
    code = await _run("--url", server.url, "--timeout", "0.05", "subscribe", "quiet")
    assert code == 4
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("streamer-client: timeout:")


def test_module_entry_point_runs_the_cli() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "streamer_client", "--help"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert completed.returncode == 0
    assert "request" in completed.stdout
    assert "subscribe" in completed.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["request", "Not An Action"],
        ["request", "echo", json.dumps({"blob": "x" * 200_000})],
        ["subscribe", "bad#topic"],
    ],
)
async def test_a_request_the_client_cannot_build_is_a_usage_error(
    server: FakeServer, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    server.script = answer_basics
    code = await _run("--url", server.url, *argv)
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    [line] = err.strip().splitlines()
    assert line.startswith("streamer-client: usage error:")
    assert server.received == []


def _read_line(fd: int) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 1)
        if not chunk:
            break
        data += chunk
    return data.decode()


async def test_json_subscribe_into_a_pipe_whose_reader_left_exits_quietly(
    server: FakeServer,
) -> None:
    async def script(conn: FakeConnection) -> None:
        frame = await conn.recv_action("subscribe")
        await conn.send(subscribed(frame["id"], "news"))
        # Events keep coming for as long as the client listens.
        for n in range(100_000):
            await conn.send(event("news", n, f"E{n}"))
            await asyncio.sleep(0.005)

    server.script = script
    read_end, write_end = os.pipe()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamer_client",
        "--url",
        server.url,
        "--json",
        "subscribe",
        "news",
        stdout=write_end,
        stderr=asyncio.subprocess.PIPE,
    )
    os.close(write_end)
    try:
        first = await asyncio.wait_for(asyncio.to_thread(_read_line, read_end), WAIT)
        os.close(read_end)  # what `| head -1` does after its line
        _, err = await asyncio.wait_for(process.communicate(), WAIT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert json.loads(first)["type"] == "subscribed"
    assert process.returncode == 0
    assert "Traceback" not in err.decode()
    assert err.decode().strip() == ""


async def test_verbose_is_accepted(server: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.script = answer_basics
    assert await _run("--url", server.url, "--verbose", "request", "echo", '{"v": 1}') == 0
    assert json.loads(capsys.readouterr().out) == {"v": 1}


def _log_a_failure() -> None:
    try:
        raise RuntimeError("callback broke")
    except RuntimeError:
        logging.getLogger("streamer_client").exception("on_frame callback failed")


def test_client_log_records_are_one_line_unless_verbose(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with cli._logging_to_stderr(verbose=False):
        _log_a_failure()
    quiet = capsys.readouterr().err
    assert quiet.splitlines() == [
        "streamer-client: ERROR: on_frame callback failed (RuntimeError: callback broke)"
    ]
    with cli._logging_to_stderr(verbose=True):
        _log_a_failure()
    assert "Traceback" in capsys.readouterr().err
    # The run's handler is gone afterwards: a host calling main() keeps its own logging.
    assert logging.getLogger("streamer_client").handlers == []
