"""The Python SDK against the real local stack: gateway, router, queue, processor, management API.

The scripted-server tests in tests/client cover the protocol's edge cases; these prove the SDK
and the server agree on the wire, including re-attaching a job after the gateway dropped the
connection in the middle of it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from e2e_support import REPLY_TIMEOUT, connection_ids, eventually, management_client
from streamer_client import (
    AuthenticationFailed,
    ConnectionState,
    ForbiddenError,
    InternalServerError,
    ProgressFrame,
    RequestStatus,
    StreamerClient,
    ValidationError,
)
from streamer_client import sync as sync_client
from streamer_client.cli import main as cli_main
from streamer_core import new_request_id
from streamer_core.storage import RequestKey, RequestStore
from streamer_handlers import publish
from streamer_infra.local import LocalStack

FAST: dict[str, Any] = {"backoff_initial": 0.05, "backoff_max": 0.2, "open_timeout": REPLY_TIMEOUT}


async def _drop(stack: LocalStack, tenant: str, user: str) -> None:
    """Close the user's socket from the server side, the way the gateway would."""
    [connection_id] = connection_ids(stack, tenant, user)
    await asyncio.to_thread(management_client(stack).delete_connection, ConnectionId=connection_id)


async def test_echo_round_trip(local_stack: LocalStack) -> None:
    token = local_stack.token("sdk-echo", "acme")
    async with StreamerClient(local_stack.ws_url, token=token, **FAST) as client:
        result = await asyncio.wait_for(client.request("echo", {"text": "hi"}), REPLY_TIMEOUT)
    assert result == {"text": "hi"}


async def test_report_streams_ordered_progress_then_its_result(local_stack: LocalStack) -> None:
    token = local_stack.token("sdk-report", "acme")
    seen: list[ProgressFrame] = []
    async with StreamerClient(local_stack.ws_url, token=token, **FAST) as client:
        result = await asyncio.wait_for(
            client.request("generate_report", {"steps": 4, "title": "q3"}, on_progress=seen.append),
            REPLY_TIMEOUT,
        )
    assert result == {"title": "q3", "steps": 4, "rows": 40, "requested_by": "sdk-report"}
    seqs = [update.seq for update in seen]
    assert seqs == sorted(set(seqs))
    assert seen[-1].percentage == 100


async def test_submitted_job_can_be_followed_and_awaited(local_stack: LocalStack) -> None:
    token = local_stack.token("sdk-job", "acme")
    async with StreamerClient(local_stack.ws_url, token=token, **FAST) as client:
        job = await asyncio.wait_for(client.submit("generate_report", {"steps": 3}), REPLY_TIMEOUT)
        percentages = [update.percentage async for update in job.progress()]
        result = await asyncio.wait_for(job.result(), REPLY_TIMEOUT)
    assert result["rows"] == 30
    assert percentages == sorted(percentages)
    assert job.status is RequestStatus.COMPLETED


async def test_remote_failures_raise_typed_errors(local_stack: LocalStack) -> None:
    token = local_stack.token("sdk-errors", "acme")
    async with StreamerClient(local_stack.ws_url, token=token, **FAST) as client:
        with pytest.raises(InternalServerError):
            await asyncio.wait_for(client.request("explode"), REPLY_TIMEOUT)
        with pytest.raises(ForbiddenError):
            await asyncio.wait_for(client.request("audit"), REPLY_TIMEOUT)
        with pytest.raises(ValidationError) as caught:
            await asyncio.wait_for(client.request("generate_report", {"steps": 0}), REPLY_TIMEOUT)
        assert caught.value.details.get("field") == "payload.steps"
        assert await asyncio.wait_for(client.request("echo", {"ok": 1}), REPLY_TIMEOUT) == {"ok": 1}


async def test_subscription_receives_published_events(local_stack: LocalStack) -> None:
    token = local_stack.token("sdk-sub", "acme")
    async with (
        StreamerClient(local_stack.ws_url, token=token, **FAST) as client,
        client.subscribe("sdk-news") as events,
    ):
        await asyncio.to_thread(publish, "acme", "sdk-news", {"headline": "one"})
        event = await asyncio.wait_for(anext(events), REPLY_TIMEOUT)
    assert (event.topic, event.data) == ("sdk-news", {"headline": "one"})


async def test_job_survives_a_dropped_connection_and_ends_once(local_stack: LocalStack) -> None:
    issued: list[str] = []

    def token_provider() -> str:
        issued.append(local_stack.token("sdk-drop", "acme"))
        return issued[-1]

    states: list[ConnectionState] = []
    seen: list[int] = []
    async with StreamerClient(
        local_stack.ws_url, token_provider=token_provider, on_state_change=states.append, **FAST
    ) as client:
        first_progress = asyncio.Event()

        def on_progress(update: ProgressFrame) -> None:
            seen.append(update.seq)
            first_progress.set()

        request_id = new_request_id()
        request = asyncio.create_task(
            client.request(
                "generate_report", {"steps": 30}, on_progress=on_progress, request_id=request_id
            )
        )
        await asyncio.wait_for(first_progress.wait(), REPLY_TIMEOUT)
        await _drop(local_stack, "acme", "sdk-drop")
        result = await asyncio.wait_for(request, REPLY_TIMEOUT)
        async with client.subscribe("sdk-after-drop") as events:
            await asyncio.to_thread(publish, "acme", "sdk-after-drop", "still subscribed")
            assert (await asyncio.wait_for(anext(events), REPLY_TIMEOUT)).data == (
                "still subscribed"
            )
    assert result["steps"] == 30
    assert seen
    assert seen == sorted(set(seen))
    assert len(issued) >= 2
    assert ConnectionState.RECONNECTING in states
    # The drop did not make the server run the job a second time.
    store = RequestStore(
        local_stack.aws_client("dynamodb"), local_stack.resources.tables["requests"]
    )
    record = store.get(RequestKey("acme", "sdk-drop", request_id))
    assert record is not None
    assert record.status is RequestStatus.COMPLETED
    assert record.attempts == 1


async def test_subscription_is_restored_after_a_dropped_connection(
    local_stack: LocalStack,
) -> None:
    token = local_stack.token("sdk-resub", "acme")
    async with (
        StreamerClient(local_stack.ws_url, token=token, **FAST) as client,
        client.subscribe("sdk-resub-news") as events,
    ):
        await _drop(local_stack, "acme", "sdk-resub")
        await eventually(
            lambda: (
                client.state is ConnectionState.CONNECTED
                and len(connection_ids(local_stack, "acme", "sdk-resub")) == 1
            ),
            "client reconnected",
        )
        # Publishing repeatedly covers the moment between reconnecting and resubscribing.
        event = None
        for _ in range(100):
            await asyncio.to_thread(publish, "acme", "sdk-resub-news", "back")
            try:
                event = await asyncio.wait_for(anext(events), 0.2)
                break
            except TimeoutError:
                continue
    assert event is not None
    assert event.data == "back"


async def test_refused_token_raises_authentication_failed(local_stack: LocalStack) -> None:
    client = StreamerClient(local_stack.ws_url, token="not-a-jwt", **FAST)
    with pytest.raises(AuthenticationFailed) as caught:
        await client.connect()
    assert caught.value.status_code == 401


async def test_blocking_client_round_trip(local_stack: LocalStack) -> None:
    token = local_stack.token("sdk-sync", "acme")

    def run() -> tuple[Any, Any]:
        with sync_client.StreamerClient(local_stack.ws_url, token=token, **FAST) as client:
            return client.request("echo", {"n": 1}), client.request("generate_report", {"steps": 2})

    echoed, report = await asyncio.wait_for(asyncio.to_thread(run), REPLY_TIMEOUT)
    assert echoed == {"n": 1}
    assert report["rows"] == 20


async def test_cli_request(local_stack: LocalStack, capsys: pytest.CaptureFixture[str]) -> None:
    token = local_stack.token("sdk-cli", "acme")
    argv = ["--url", local_stack.ws_url, "--token", token, "request", "generate_report"]
    code = await asyncio.wait_for(
        asyncio.to_thread(cli_main, [*argv, '{"steps": 2}']), REPLY_TIMEOUT
    )
    out, err = capsys.readouterr()
    assert code == 0
    assert json.loads(out)["rows"] == 20
    assert "100.0%" in err
