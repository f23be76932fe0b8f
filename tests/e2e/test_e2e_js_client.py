"""The TypeScript client, as built for npm, against the real local stack.

A Node script (packages/streamer-client-js/e2e/local-stack.mjs) runs the built `dist/` with
`ws` against a stack started in this process: an echo, a job followed to completion, a
subscription that receives a server-side publish, a connection dropped by the gateway and
restored with its subscription, and a forged token refused. The script prints one JSON line
per step; this test answers some of them (publishing, dropping the connection) and checks
what the client saw.

The package is installed and built here when needed, so the test never passes on a stale or
missing build; it is skipped only on machines without Node.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from e2e_support import REPLY_TIMEOUT, connection_ids, management_client
from streamer_core.auth import TokenIssuer, generate_key_pair
from streamer_handlers import publish
from streamer_infra.local import DEV_ISSUER, LocalStack

NODE = shutil.which("node")
PACKAGE = Path(__file__).resolve().parents[2] / "packages" / "streamer-client-js"
SCRIPT = PACKAGE / "e2e" / "local-stack.mjs"
TENANT, USER = "acme", "js-user"

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


def _npm(*args: str) -> None:
    npm = shutil.which("npm")
    assert npm is not None, "node is installed but npm is not"
    done = subprocess.run(
        [npm, *args], cwd=PACKAGE, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"npm {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def built_package() -> Path:
    """The package as `npm run build` leaves it, from the current sources."""
    if (
        not (PACKAGE / "node_modules" / "ws").is_dir()
        or not (PACKAGE / "node_modules" / "typescript").is_dir()
    ):
        _npm("ci", "--no-audit", "--no-fund")
    # Always rebuilt: a dist/ left over from older sources would test something else.
    _npm("run", "build")
    assert (PACKAGE / "dist" / "index.js").is_file()
    return PACKAGE


class _Script:
    """The Node process and its JSON lines, read on a thread so waits can be bounded."""

    def __init__(self, env: dict[str, str]) -> None:
        assert NODE is not None
        self.process = subprocess.Popen(
            [NODE, str(SCRIPT)],
            cwd=PACKAGE,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def next_step(self) -> dict[str, Any] | None:
        try:
            line = self.lines.get(timeout=REPLY_TIMEOUT * 2)
        except queue.Empty:
            raise AssertionError(f"the script went quiet; it said {self.seen}") from None
        if line is None:
            return None
        step: dict[str, Any] = json.loads(line)
        self.seen.append(step)
        return step

    def finish(self) -> str:
        """Wait for the script to end (killing it if it hangs); its stderr."""
        try:
            _, stderr = self.process.communicate(timeout=REPLY_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate()
        return stderr or ""


def test_js_client_against_the_local_stack(local_stack: LocalStack, built_package: Path) -> None:
    other_key, _ = generate_key_pair()
    env = {
        **os.environ,
        "STREAMER_URL": local_stack.ws_url,
        "STREAMER_TOKEN": local_stack.token(USER, TENANT, ["reports:write"]),
        "STREAMER_FORGED_TOKEN": TokenIssuer(other_key, issuer=DEV_ISSUER).issue(USER, TENANT),
    }
    script = _Script(env)
    steps: dict[str, list[dict[str, Any]]] = {}
    try:
        while (step := script.next_step()) is not None:
            steps.setdefault(step["step"], []).append(step)
            if step["step"] == "subscribed":
                publish(TENANT, "news", {"n": 1})
            elif step["step"] == "event" and step["data"] == {"n": 1}:
                # The gateway drops the socket, as it would at its idle or age limit.
                [connection_id] = connection_ids(local_stack, TENANT, USER)
                management_client(local_stack).delete_connection(ConnectionId=connection_id)
            elif step["step"] == "resubscribed":
                publish(TENANT, "news", {"n": 2})
    finally:
        stderr = script.finish()
    said = f"script said {script.seen}\nstderr:\n{stderr}"
    assert script.process.returncode == 0, said
    assert "failed" not in steps, said

    [echo] = steps["echo"]
    assert echo["result"] == {"text": "hi from node"}

    [job] = steps["job"]
    assert job["status"] == "COMPLETED"
    assert job["result"] == {"title": "from js", "steps": 3, "rows": 30, "requested_by": USER}
    seqs = [update["seq"] for update in job["updates"]]
    assert seqs == sorted(set(seqs)), said
    assert job["updates"][-1]["percentage"] == 100

    [request] = steps["request"]
    assert request["result"]["rows"] == 20
    assert request["seqs"], said
    assert request["seqs"] == sorted(set(request["seqs"])), said

    events = [(event["topic"], event["data"]) for event in steps["event"]]
    assert events == [("news", {"n": 1}), ("news", {"n": 2})], said
    states = [state["state"] for state in steps["state"]]
    assert states[:2] == ["connecting", "connected"]
    assert "reconnecting" in states, said
    assert states[-1] == "closed", said

    [forged] = steps["forged"]
    assert forged["error"] == "AuthenticationFailedError", said
    assert (forged["code"], forged["status"]) == ("AUTHENTICATION_FAILED", 401)
