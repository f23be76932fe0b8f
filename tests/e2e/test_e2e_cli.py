"""The `streamer` command: token minting, `dev` until Ctrl-C, `demo`, one-line errors."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_support import E2E_APP
from streamer_core.auth import KeySet, TokenVerifier
from streamer_infra.cli import main, parse_duration
from streamer_infra.local import DEV_ISSUER
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


def _cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "streamer_infra.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def test_token_is_accepted_by_the_dev_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["token", "--sub", "u1", "--tenant", "t1", "--permissions", "a, b", "--ttl", "30m"]
    assert main([*args, "--state-dir", str(tmp_path)]) == 0
    token = capsys.readouterr().out.strip()
    verifier = TokenVerifier(KeySet.from_file(tmp_path / "jwt-public.pem"), issuer=DEV_ISSUER)
    principal = verifier.verify(token)
    assert (principal.user_id, principal.tenant_id) == ("u1", "t1")
    assert principal.permissions == frozenset({"a", "b"})
    assert oct((tmp_path / "jwt-private.pem").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["token", "--sub", "u"], "--tenant"),
        (["token", "--sub", "u", "--tenant", "t", "--ttl", "soon"], "invalid duration"),
        (["dev", "--jwt-public-key", "/no/such/key.pem"], "cannot read the public key"),
        (["launch"], "invalid choice"),
    ],
)
def test_errors_are_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("streamer: error: ")
    assert message in err


def test_busy_port_is_one_line(tmp_path: Path) -> None:
    # A subprocess: `streamer dev` runs its own event loop in the main thread, which must
    # not be left behind in this one.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process = _cli("dev", "--port", str(port), "--state-dir", str(tmp_path))
        _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "already in use" in err
    assert err.startswith("streamer: error: ")
    assert err.count("\n") == 1


def test_durations() -> None:
    assert [parse_duration(t) for t in ("90", "45s", "30m", "1h", "2d")] == [
        90,
        45,
        1800,
        3600,
        172800,
    ]


async def test_dev_serves_until_ctrl_c_then_closes_clients_with_1001(tmp_path: Path) -> None:
    # The app module lives in the working directory, as a user's project module would.
    app_dir = Path(__file__).parent
    process = _cli(
        "dev", "--port", "0", "--state-dir", str(tmp_path), "--app", E2E_APP, cwd=app_dir
    )
    try:
        assert process.stdout is not None
        banner = ""
        while "Press Ctrl-C" not in banner:
            line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 60)
            assert line, (
                f"streamer dev exited early: {process.stderr.read() if process.stderr else ''}"
            )
            banner += line
        url = re.search(r"WebSocket URL:\s+(\S+)", banner)
        token = re.search(r"Dev token[^:]*:\s+(\S+)", banner)
        assert url
        assert token
        assert "Management endpoint:" in banner
        assert "streamer-client --url" in banner

        async with connect(
            url.group(1), additional_headers={"Authorization": f"Bearer {token.group(1)}"}
        ) as ws:
            await ws.send(json.dumps({"action": "explode", "id": "cli-1"}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 20))
            assert (reply["request_id"], reply["code"]) == ("cli-1", "INTERNAL_ERROR")
            process.send_signal(signal.SIGINT)
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 20)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1001
        out, err = await asyncio.to_thread(process.communicate, timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    assert "Traceback" not in err
    assert "Stopped." in out


async def test_token_from_another_process_is_accepted_by_dev(tmp_path: Path) -> None:
    minted = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "streamer_infra.cli",
            "token",
            "--sub",
            "x",
            "--tenant",
            "y",
            "--state-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    verifier = TokenVerifier(KeySet.from_file(tmp_path / "jwt-public.pem"), issuer=DEV_ISSUER)
    assert verifier.verify(minted.stdout.strip()).user_id == "x"


async def test_demo_runs_end_to_end_and_exits_0(tmp_path: Path) -> None:
    process = _cli("demo", env={"STREAMER_DEMO_DELAY": "0.01"})
    out, err = await asyncio.to_thread(process.communicate, timeout=90)
    assert process.returncode == 0, err
    assert "echo -> " in out
    assert "100.0%" in out
    assert '"rows": 50' in out
    assert "Traceback" not in err


def test_unusable_public_key_is_refused_before_serving(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "public.pem"
    key.write_text("not a key")
    assert main(["dev", "--jwt-public-key", str(key)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("streamer: error: ")
    assert "unusable public key" in err
    assert err.count("\n") == 1
