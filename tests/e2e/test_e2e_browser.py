"""A real browser against `streamer dev`: the TypeScript client in a page, and the console.

Headless Chromium (Debian's `chromium`), driven by `playwright-core` from tests/browser/run.mjs,
runs a page that uses the built client (`dist/`, served beside it) through an echo, a
job followed to completion and a subscription that receives a publish made from the console's
form; the console's close button then drops the page's socket, and the page reconnects,
resubscribes and gets the next event. The console must show the connection, the invocations
and the job; a forged token must be refused with a clear message on the page and its reason
in the console. Screenshots land in build/browser/ for people to look at.

Skipped only where Chromium or Node is missing (CI installs both). The harness's npm packages
are installed here when absent, and the client is built when its dist/ is older than its
sources.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import FAST_HANDLER_ENV, REPLY_TIMEOUT, stack_config
from streamer_core.auth import TokenIssuer, generate_key_pair
from streamer_infra.local import DEV_ISSUER, BackgroundStack, DevKeys, LocalStack

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "browser"
CLIENT = ROOT / "packages" / "streamer-client-js"
SCREENSHOTS = ROOT / "build" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
NODE = shutil.which("node")
TENANT, USER = "acme", "browser-user"

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}"),
    pytest.mark.skipif(NODE is None, reason="node is not installed"),
]


def _npm(cwd: Path, *args: str) -> None:
    npm = shutil.which("npm")
    assert npm is not None, "node is installed but npm is not"
    done = subprocess.run(
        [npm, *args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"npm {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"


def _stale(dist: Path, sources: Path) -> bool:
    built = dist / "index.js"
    if not built.is_file():
        return True
    newest = max(path.stat().st_mtime for path in sources.rglob("*.ts"))
    return newest > built.stat().st_mtime


@pytest.fixture(scope="module")
def harness() -> Path:
    """tests/browser with playwright-core installed, and the client's dist/ up to date."""
    if not (HARNESS / "node_modules" / "playwright-core").is_dir():
        _npm(HARNESS, "ci", "--no-audit", "--no-fund")
    if _stale(CLIENT / "dist", CLIENT / "src"):
        if not (CLIENT / "node_modules" / "typescript").is_dir():
            _npm(CLIENT, "ci", "--no-audit", "--no-fund")
        _npm(CLIENT, "run", "build")
    return HARNESS


@pytest.fixture(scope="module")
def console_stack(
    e2e_keys: DevKeys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    # The reason of a refused `$connect` is an INFO line of the function's; the handlers'
    # logger keeps the level of the first stack this process started (none yet: 0).
    handler_logger = logging.getLogger("streamer")
    level = handler_logger.level
    handler_logger.setLevel(logging.INFO)
    config = stack_config(
        e2e_keys,
        tmp_path_factory.mktemp("stack"),
        console=True,
        environment={**FAST_HANDLER_ENV, "POWERTOOLS_LOG_LEVEL": "INFO"},
    )
    try:
        with BackgroundStack(config) as stack:
            yield stack
    finally:
        if level:
            handler_logger.setLevel(level)


def _steps(stdout: str) -> dict[str, list[dict[str, Any]]]:
    steps: dict[str, list[dict[str, Any]]] = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            step = json.loads(line)
            steps.setdefault(step["step"], []).append(step)
    return steps


def test_a_page_and_the_console_in_chromium(console_stack: LocalStack, harness: Path) -> None:
    assert NODE is not None
    assert console_stack.console_url is not None
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    other_key, _ = generate_key_pair()
    env = {
        **os.environ,
        "STREAMER_CONSOLE_URL": console_stack.console_url,
        "STREAMER_URL": console_stack.ws_url,
        "STREAMER_TOKEN": console_stack.token(USER, TENANT, ["reports:write"]),
        "STREAMER_FORGED_TOKEN": TokenIssuer(other_key, issuer=DEV_ISSUER).issue(USER, TENANT),
        "STREAMER_USER": USER,
        "STREAMER_TENANT": TENANT,
        "STREAMER_CLIENT_DIST": str(CLIENT / "dist"),
        "SCREENSHOT_DIR": str(SCREENSHOTS),
        "CHROMIUM": str(CHROMIUM),
    }
    done = subprocess.run(
        [NODE, str(harness / "run.mjs")],
        cwd=harness,
        env=env,
        capture_output=True,
        text=True,
        # Only bounds a hang; every wait inside has its own bound.
        timeout=REPLY_TIMEOUT * 12,
        check=False,
    )
    steps = _steps(done.stdout)
    said = f"the driver said:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == 0, said
    assert "failed" not in steps, said
    assert "pageerror" not in steps, said

    [echo] = steps["echo"]
    assert echo["result"] == {"text": "hello from the browser"}

    [job] = steps["job"]
    assert job["status"] == "COMPLETED", said
    assert job["result"] == {
        "title": "from the browser",
        "steps": 4,
        "rows": 40,
        "requested_by": USER,
    }
    seqs = [int(update.split(":")[0]) for update in job["updates"]]
    assert seqs, said
    assert seqs == sorted(set(seqs)), said
    assert job["updates"][-1].endswith(":100"), said

    assert [step["n"] for step in steps["event"]] == [1, 2], said
    assert [step["outcome"] for step in steps["published"]] == ["delivered to 1"] * 2, said
    [resubscribed] = steps["resubscribed"]
    assert "reconnecting" in resubscribed["states"], said

    [shown] = steps["console"]
    assert shown["connection_before"] != shown["connection_after"], said
    assert "Connection deleted" in shown["closed_note"], said
    assert "COMPLETED" in shown["job_text"], said
    assert "100%" in shown["job_text"], said
    assert shown["topic_subscribers"] == "1", said
    seen = {(row["function"], row["route"]) for row in shown["invocations"]}
    for expected in (
        ("connect", "$connect"),
        ("router", "echo"),
        ("router", "generate_report"),
        ("router", "subscribe"),
        ("disconnect", "$disconnect"),
    ):
        assert expected in seen, f"{expected} not among {seen}"
    assert any(function == "processor" for function, _ in seen), seen

    [forged] = steps["forged"]
    assert forged["error"] == "ConnectionFailedError", said
    assert "refused the token or is unreachable" in forged["notice"], said
    assert "401" in forged["console_refused"], said
    assert "bad_signature" in forged["console_refused"], said

    [composer] = steps["composer"]
    assert json.loads(composer["reply"]) == {"from": "the composer"}, said

    for name in ("console.png", "app-page.png", "forged-token.png"):
        assert (SCREENSHOTS / name).stat().st_size > 0
