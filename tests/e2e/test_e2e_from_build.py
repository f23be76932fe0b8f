"""What deploys is what runs: the end-to-end path against the built Lambda archive.

The stack here runs `streamer dev --from-build`'s way: this machine's twin of the deployment's
archive, each function in worker processes of an isolated interpreter that imports only from
the archive and the runtime's packages, with the deployment's environment and tracing on.
A module the archive lacks, a wrong handler string or a variable only AWS sets fails here.

Building the archive downloads wheels the first time (about a minute); later runs reuse it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from e2e_support import (
    eventually,
    open_ws,
    receive,
    receive_for,
    send,
    stack_config,
    until_terminal,
)
from streamer_core.storage import SubscriptionStore
from streamer_infra.local import BackgroundStack, DevKeys, LocalStack, ProcessInvoker
from websockets.exceptions import InvalidStatus

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def archive_stack(
    e2e_keys: DevKeys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    # The demo app ships in the archive; the tests' own app is a loose module of this folder.
    config = stack_config(e2e_keys, tmp_path_factory.mktemp("stack"), app=None, from_build=True)
    with BackgroundStack(config, start_timeout=900) as stack:
        yield stack


def _subscriptions(stack: LocalStack) -> SubscriptionStore:
    return SubscriptionStore(stack.aws_client("dynamodb"), stack.resources.tables["subscriptions"])


def _topic_subscribers(stack: LocalStack, tenant: str, topic: str) -> set[str]:
    return set(_subscriptions(stack).subscribers(tenant, topic).items)


def test_the_functions_run_in_worker_processes_of_their_own(archive_stack: LocalStack) -> None:
    assert isinstance(archive_stack.invoker, ProcessInvoker)
    assert archive_stack.xray is not None


async def test_the_authorizer_accepts_a_valid_token_and_refuses_a_forged_one_with_tracing_on(
    archive_stack: LocalStack,
) -> None:
    forged = archive_stack.token("mallory", "acme") + "x"
    with pytest.raises(InvalidStatus) as refused:
        await open_ws(archive_stack, forged)
    assert refused.value.response.status_code == 401

    ws = await open_ws(archive_stack, archive_stack.token("ann", "acme"))
    try:
        await send(ws, "echo", {"hello": "archive"}, id="echo-1")
        reply = await receive_for(ws, "echo-1")
        assert (reply["type"], reply["result"]) == ("response", {"hello": "archive"})
    finally:
        await ws.close()
    # The tracer ran inside the archive's `$connect` and reached the local X-Ray daemon.
    sink = archive_stack.xray
    assert sink is not None
    await eventually(
        lambda: any(s.name == "verify_token" for s in sink.segments), "a verify_token segment"
    )
    assert any(s.name == "verify_token" and s.error for s in sink.segments)


async def test_an_async_job_streams_progress_in_order_and_completes(
    archive_stack: LocalStack,
) -> None:
    ws = await open_ws(archive_stack, archive_stack.token("ann", "acme", ["reports:write"]))
    try:
        await send(ws, "generate_report", {"steps": 4, "title": "q3"}, id="job-1")
        frames = await until_terminal(ws, "job-1")
    finally:
        await ws.close()
    kinds = [frame["type"] for frame in frames]
    assert kinds[0] == "acknowledgment"
    assert kinds[-1] == "complete"
    progress = [frame["percentage"] for frame in frames if frame["type"] == "progress"]
    assert progress == sorted(progress)
    assert progress[-1] == 100
    assert frames[-1]["result"] == {
        "title": "q3",
        "steps": 4,
        "rows": 40,
        "requested_by": "ann",
    }


async def test_a_publish_from_a_function_reaches_subscribers_and_prunes_a_vanished_one(
    archive_stack: LocalStack,
) -> None:
    listener = await open_ws(archive_stack, archive_stack.token("ben", "acme"))
    publisher = await open_ws(archive_stack, archive_stack.token("cy", "acme", ["topics:publish"]))
    other_tenant = await open_ws(archive_stack, archive_stack.token("oz", "globex"))
    ghost = "ghostConnection0="
    try:
        for name, ws in (("listener", listener), ("other", other_tenant)):
            await send(ws, "subscribe", {"topic": "news"}, id=f"sub-{name}")
            assert (await receive_for(ws, f"sub-{name}"))["type"] == "subscribed"
        # A subscription whose socket vanished without a `$disconnect` (a crash): only the
        # delivery finds out, through the management API's 410.
        _subscriptions(archive_stack).subscribe(
            ghost, "acme", "news", expires_at=int(time.time()) + 600
        )
        await send(publisher, "announce", {"topic": "news", "data": {"n": 1}}, id="pub-1")
        answer = await receive_for(publisher, "pub-1")
        assert answer["result"] == {"topic": "news", "delivered": 1, "gone": 1}
        event = await receive(listener)
        assert (event["type"], event["topic"], event["data"]) == ("event", "news", {"n": 1})
        assert ghost not in _topic_subscribers(archive_stack, "acme", "news")
        # Tenants are isolated: nothing reached globex's subscriber of the same topic.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(other_tenant.recv(), 0.5)
    finally:
        for ws in (listener, publisher, other_tenant):
            await ws.close()


async def test_disconnect_removes_the_connection_and_its_subscriptions(
    archive_stack: LocalStack,
) -> None:
    ws = await open_ws(archive_stack, archive_stack.token("dee", "acme"))
    await send(ws, "subscribe", {"topic": "leaving"}, id="sub")
    assert (await receive_for(ws, "sub"))["type"] == "subscribed"
    assert len(_topic_subscribers(archive_stack, "acme", "leaving")) == 1
    await ws.close()
    await eventually(
        lambda: not _topic_subscribers(archive_stack, "acme", "leaving"),
        "the subscription removed by $disconnect",
    )
    invoker = archive_stack.invoker
    assert isinstance(invoker, ProcessInvoker)
    assert invoker.cold_starts.get("disconnect", 0) >= 1


async def test_streamer_demo_from_build_passes(archive_stack: LocalStack) -> None:
    # The module's stack has built (or found) the archive: the demo reuses it.
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "streamer_infra.cli", "demo", "--from-build"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
        check=False,
    )
    out, err = done.stdout, done.stderr
    assert done.returncode == 0, err
    assert "echo -> " in out
    assert "100.0%" in out
    assert '"rows": 50' in out
    assert "Traceback" not in err
