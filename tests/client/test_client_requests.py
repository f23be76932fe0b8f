"""Requests and jobs against a scripted server: answers, progress order, errors, timeouts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
from client_fakes import (
    FAST,
    WAIT,
    FakeConnection,
    FakeServer,
    ack,
    answer_basics,
    complete,
    error,
    progress,
    response,
    status,
    until,
)
from streamer_client import (
    ClientClosed,
    ConflictError,
    ErrorCode,
    ForbiddenError,
    InternalServerError,
    InvalidRequest,
    NotFoundError,
    ProgressFrame,
    RateLimitedError,
    RemoteError,
    RemoteTimeoutError,
    RequestCancelledError,
    RequestStatus,
    RequestTimeout,
    StreamerClient,
    UnauthorizedError,
    ValidationError,
)
from streamer_client.testing import MockServer, Progress

MakeClient = Callable[..., StreamerClient]


async def test_sync_action_returns_the_response(
    server: FakeServer, make_client: MakeClient
) -> None:
    server.script = answer_basics
    async with make_client() as client:
        result = await asyncio.wait_for(client.request("echo", {"text": "hi"}), WAIT)
    assert result == {"text": "hi"}
    [sent] = server.actions("echo")
    assert sent["payload"] == {"text": "hi"}
    assert isinstance(sent["id"], str)


async def test_token_travels_in_the_authorization_header(
    server: FakeServer, make_client: MakeClient
) -> None:
    server.script = answer_basics
    async with make_client(token="secret-token") as client:
        await asyncio.wait_for(client.request("echo"), WAIT)
    assert server.handshakes[0]["Authorization"] == "Bearer secret-token"
    assert "token" not in server.paths[0]


async def test_query_token_only_when_asked(server: FakeServer, make_client: MakeClient) -> None:
    server.script = answer_basics
    async with make_client(token="secret-token", query_token=True) as client:
        await asyncio.wait_for(client.request("echo"), WAIT)
    assert server.paths[0] == "/ws?token=secret-token"
    assert "Authorization" not in server.handshakes[0]


async def test_async_job_streams_progress_then_completes() -> None:
    server = MockServer()
    steps = [Progress(pct, f"step {seq}") for seq, pct in enumerate((10.0, 50.0, 100.0), start=1)]
    server.job("generate_report", progress=steps, result={"rows": 3})
    seen: list[ProgressFrame] = []
    async with StreamerClient("ws://test", **FAST, token="tok-1", connect=server.connect) as client:
        result = await asyncio.wait_for(
            client.request("generate_report", {"n": 3}, on_progress=seen.append), WAIT
        )
    assert result == {"rows": 3}
    assert [p.seq for p in seen] == [1, 2, 3]
    assert [p.percentage for p in seen] == [10.0, 50.0, 100.0]
    assert seen[-1].message == "step 3"


async def test_async_progress_callbacks_are_awaited_in_order(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        rid = (await conn.recv())["id"]
        await conn.send(ack(rid))
        await conn.send(progress(rid, 1, 30.0))
        await conn.send(progress(rid, 2, 60.0))
        await conn.send(complete(rid, "done"))

    server.script = script
    seen: list[int] = []

    async def on_progress(update: ProgressFrame) -> None:
        await asyncio.sleep(0)
        seen.append(update.seq)

    async with make_client() as client:
        result = await asyncio.wait_for(client.request("work", on_progress=on_progress), WAIT)
    assert result == "done"
    assert seen == [1, 2]


async def test_out_of_order_and_duplicate_progress_is_delivered_once_in_order(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        rid = (await conn.recv())["id"]
        await conn.send(ack(rid))
        for seq in (1, 3, 2, 3, 1, 4, 4, 6, 5):
            await conn.send(progress(rid, seq, seq * 10.0))
        await conn.send(complete(rid, "ok"))

    server.script = script
    async with make_client() as client:
        job = await asyncio.wait_for(client.submit("work"), WAIT)
        seqs = [p.seq async for p in job.progress()]
        assert await asyncio.wait_for(job.result(), WAIT) == "ok"
    assert seqs == [1, 3, 4, 6]
    assert job.status is RequestStatus.COMPLETED


async def test_progress_before_the_acknowledgment_is_kept(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        rid = (await conn.recv())["id"]
        await conn.send(progress(rid, 1, 5.0))
        await conn.send(ack(rid, status="PROCESSING"))
        await conn.send(progress(rid, 2, 50.0))
        await conn.send(complete(rid, 1))

    server.script = script
    async with make_client() as client:
        job = await asyncio.wait_for(client.submit("work"), WAIT)
        assert await asyncio.wait_for(job.result(), WAIT) == 1
        assert [p.seq async for p in job.progress()] == [1, 2]


async def test_submit_returns_after_acknowledgment_with_a_live_job(
    server: FakeServer, make_client: MakeClient
) -> None:
    release = asyncio.Event()

    async def script(conn: FakeConnection) -> None:
        rid = (await conn.recv())["id"]
        await conn.send(ack(rid))
        await release.wait()
        await conn.send(progress(rid, 1, 50.0, "half"))
        await conn.send(complete(rid, [1, 2]))

    server.script = script
    async with make_client() as client:
        job = await asyncio.wait_for(client.submit("work", {"a": 1}), WAIT)
        assert job.status is RequestStatus.QUEUED
        assert not job.done()
        release.set()
        assert await asyncio.wait_for(job.result(), WAIT) == [1, 2]
    assert job.latest_progress is not None
    assert job.latest_progress.message == "half"


async def test_submit_of_a_sync_action_gives_a_finished_job(
    server: FakeServer, make_client: MakeClient
) -> None:
    server.script = answer_basics
    async with make_client() as client:
        job = await asyncio.wait_for(client.submit("echo", {"x": 1}), WAIT)
        assert job.done()
        assert await job.result() == {"x": 1}


@pytest.mark.parametrize(
    ("code", "exception"),
    [
        (ErrorCode.VALIDATION_ERROR, ValidationError),
        (ErrorCode.UNAUTHORIZED, UnauthorizedError),
        (ErrorCode.FORBIDDEN, ForbiddenError),
        (ErrorCode.NOT_FOUND, NotFoundError),
        (ErrorCode.CONFLICT, ConflictError),
        (ErrorCode.RATE_LIMITED, RateLimitedError),
        (ErrorCode.TIMEOUT, RemoteTimeoutError),
        (ErrorCode.INTERNAL_ERROR, InternalServerError),
        (ErrorCode.CANCELLED, RequestCancelledError),
    ],
)
async def test_remote_errors_raise_the_exception_of_their_code(
    server: FakeServer, make_client: MakeClient, code: ErrorCode, exception: type[RemoteError]
) -> None:
    async def script(conn: FakeConnection) -> None:
        rid = (await conn.recv())["id"]
        await conn.send(error(rid, code.value, "it went wrong", {"field": "payload.x"}))

    server.script = script
    async with make_client() as client:
        with pytest.raises(exception) as caught:
            await asyncio.wait_for(client.request("work"), WAIT)
    assert caught.value.code is code
    assert caught.value.message == "it went wrong"
    assert caught.value.details == {"field": "payload.x"}


async def test_a_job_that_fails_after_acknowledgment_raises_from_result(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        rid = (await conn.recv())["id"]
        await conn.send(ack(rid))
        await conn.send(progress(rid, 1, 10.0))
        await conn.send(error(rid, "INTERNAL_ERROR", "worker crashed"))

    server.script = script
    async with make_client() as client:
        job = await asyncio.wait_for(client.submit("work"), WAIT)
        with pytest.raises(InternalServerError, match="worker crashed"):
            await asyncio.wait_for(job.result(), WAIT)
        assert [p.seq async for p in job.progress()] == [1]
    assert job.status is RequestStatus.FAILED


async def test_request_timeout_raises_and_forgets_the_request(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        await conn.recv()  # never answered

    server.script = script
    async with make_client() as client:
        with pytest.raises(RequestTimeout):
            await client.request("work", timeout=0.05)
        assert len(client._calls) == 0
        assert client._jobs == {}


async def test_client_wide_request_timeout_applies(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        rid = (await conn.recv())["id"]
        await conn.send(ack(rid))

    server.script = script
    async with make_client(request_timeout=0.05) as client:
        with pytest.raises(RequestTimeout):
            await client.request("work")


async def test_job_result_timeout_leaves_the_job_running(
    server: FakeServer, make_client: MakeClient
) -> None:
    release = asyncio.Event()

    async def script(conn: FakeConnection) -> None:
        rid = (await conn.recv())["id"]
        await conn.send(ack(rid))
        await release.wait()
        await conn.send(complete(rid, "late"))

    server.script = script
    async with make_client() as client:
        job = await asyncio.wait_for(client.submit("work"), WAIT)
        with pytest.raises(RequestTimeout):
            await job.result(timeout=0.01)
        release.set()
        assert await asyncio.wait_for(job.result(), WAIT) == "late"


async def test_closed_client_refuses_requests(server: FakeServer, make_client: MakeClient) -> None:
    server.script = answer_basics
    client = make_client()
    with pytest.raises(ClientClosed):
        await client.request("echo")
    async with client:
        pass
    with pytest.raises(ClientClosed):
        await client.request("echo")
    with pytest.raises(ClientClosed):
        await client.connect()


async def test_closing_fails_pending_requests_and_jobs(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        first = await conn.recv()
        await conn.send(ack(first["id"]))
        await conn.recv()

    server.script = script
    client = make_client()
    async with client:
        job = await asyncio.wait_for(client.submit("work"), WAIT)
        pending = asyncio.create_task(client.request("other"))
        await until(lambda: len(server.received) == 2)
    with pytest.raises(ClientClosed):
        await asyncio.wait_for(pending, WAIT)
    with pytest.raises(ClientClosed):
        await job.result()


async def test_invalid_requests_are_refused_locally(
    server: FakeServer, make_client: MakeClient
) -> None:
    server.script = answer_basics
    async with make_client() as client:
        with pytest.raises(InvalidRequest):
            await client.request("Not An Action")
        with pytest.raises(InvalidRequest):
            await client.request("echo", {"blob": "x" * 200_000})
        with pytest.raises(InvalidRequest):
            await client.request("echo", request_id="bad id with spaces")
        assert await asyncio.wait_for(client.request("echo", {"ok": True}), WAIT) == {"ok": True}
    assert [frame["action"] for frame in server.received] == ["echo"]


async def test_caller_chosen_request_id_and_metadata_are_sent(
    server: FakeServer, make_client: MakeClient
) -> None:
    server.script = answer_basics
    async with make_client() as client:
        await asyncio.wait_for(
            client.request("echo", request_id="order-42", metadata={"trace": "t-1"}), WAIT
        )
    assert server.received[0]["id"] == "order-42"
    assert server.received[0]["metadata"] == {"trace": "t-1"}


async def test_cancel_of_a_queued_job(server: FakeServer, make_client: MakeClient) -> None:
    async def script(conn: FakeConnection) -> None:
        rid = (await conn.recv())["id"]
        await conn.send(ack(rid))
        cancel = await conn.recv_action("cancel")
        assert cancel["payload"] == {"request_id": rid}
        await conn.send(status(cancel["id"], rid, "CANCELLED", error_code="CANCELLED"))

    server.script = script
    async with make_client() as client:
        job = await asyncio.wait_for(client.submit("work"), WAIT)
        assert await asyncio.wait_for(job.cancel(), WAIT) is RequestStatus.CANCELLED
        with pytest.raises(RequestCancelledError):
            await job.result()
    assert job.status is RequestStatus.CANCELLED


async def test_cancel_of_a_running_job_ends_with_the_cancelled_error(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        rid = (await conn.recv())["id"]
        await conn.send(ack(rid))
        await conn.send(progress(rid, 1, 20.0))
        cancel = await conn.recv_action("cancel")
        await conn.send(status(cancel["id"], rid, "PROCESSING", seq=1, percentage=20.0))
        await conn.send(error(rid, "CANCELLED", "request cancelled"))

    server.script = script
    async with make_client() as client:
        job = await asyncio.wait_for(client.submit("work"), WAIT)
        assert await asyncio.wait_for(job.cancel(), WAIT) is RequestStatus.PROCESSING
        with pytest.raises(RequestCancelledError):
            await asyncio.wait_for(job.result(), WAIT)
        assert await job.cancel() is RequestStatus.CANCELLED
    assert len(server.actions("cancel")) == 1


async def test_acknowledgment_of_a_finished_request_fetches_its_result(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        rid = (await conn.recv())["id"]
        await conn.send(ack(rid, status="COMPLETED"))
        query = await conn.recv_action("status")
        assert query["payload"] == {"request_id": rid}
        await conn.send(status(query["id"], rid, "COMPLETED", result={"cached": True}))

    server.script = script
    async with make_client() as client:
        result = await asyncio.wait_for(client.request("work", request_id="again-1"), WAIT)
    assert result == {"cached": True}


async def test_error_without_request_id_is_logged_and_ignored(
    server: FakeServer, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    async def script(conn: FakeConnection) -> None:
        frame = await conn.recv()
        await conn.send(error(None, "RATE_LIMITED", "slow down"))
        await conn.send(response(frame["id"], "fine"))

    server.script = script
    with caplog.at_level(logging.WARNING, logger="streamer_client"):
        async with make_client() as client:
            assert await asyncio.wait_for(client.request("echo"), WAIT) == "fine"
    assert any("slow down" in record.getMessage() for record in caplog.records)


async def test_unsolicited_frames_for_unknown_requests_are_ignored(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        frame = await conn.recv()
        await conn.send(complete("someone-else", 1))
        await conn.send(progress("someone-else", 1, 1.0))
        await conn.send(error("someone-else", "NOT_FOUND"))
        await conn.send(response(frame["id"], "mine"))

    server.script = script
    async with make_client() as client:
        assert await asyncio.wait_for(client.request("echo"), WAIT) == "mine"


async def test_token_and_token_provider_are_exclusive() -> None:
    with pytest.raises(ValueError, match="token_provider"):
        StreamerClient("ws://127.0.0.1:1/", token="a", token_provider=lambda: "b")


@pytest.mark.parametrize("method", ["request", "submit"])
@pytest.mark.parametrize("how", ["cancelled", "timed out"])
async def test_a_call_abandoned_before_it_was_written_leaves_nothing_behind(
    server: FakeServer, make_client: MakeClient, method: str, how: str
) -> None:
    server.script = answer_basics
    async with make_client() as client:
        assert client._send_lock is not None
        # Holding the write lock parks the call between registering and writing it.
        async with client._send_lock:
            timeout = 0.01 if how == "timed out" else None
            call = asyncio.create_task(getattr(client, method)("work", timeout=timeout))
            await until(lambda: len(client._calls) == 1)
            if how == "cancelled":
                call.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await call
            else:
                with pytest.raises(RequestTimeout):
                    await asyncio.wait_for(call, WAIT)
        assert len(client._calls) == 0
        assert client._jobs == {}
        assert await asyncio.wait_for(client.request("echo", {"ok": 1}), WAIT) == {"ok": 1}
    assert server.actions("work") == []
