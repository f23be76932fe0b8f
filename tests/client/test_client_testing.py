"""``streamer_client.testing.MockServer``: the in-memory server behind the client's connect seam.

Each test runs the real client against the double, as an application's test would, and checks
both what the client sees and what the server recorded.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from streamer_client import (
    AuthenticationFailed,
    ConflictError,
    ConnectionFailed,
    ConnectionState,
    ErrorCode,
    ForbiddenError,
    InternalServerError,
    NotFoundError,
    ProgressFrame,
    RequestCancelledError,
    RequestStatus,
    StreamerClient,
    ValidationError,
)
from streamer_client import sync as blocking
from streamer_client.testing import ErrorReply, MockRequest, MockServer, Progress

# Hang guard only: no assertion depends on how long anything takes.
WAIT = 10.0
FAST: dict[str, Any] = {"backoff_initial": 0.01, "backoff_max": 0.05, "heartbeat_interval": None}


def _client(server: MockServer, **options: Any) -> StreamerClient:
    settings: dict[str, Any] = {**FAST, "token": "tok-1", "connect": server.connect, **options}
    return StreamerClient("ws://streamer.test/ws", **settings)


async def test_requests_get_the_scripted_answers() -> None:
    server = MockServer()
    server.reply("echo", lambda request: request.payload)
    server.reply("version", {"version": 3})

    async def lookup(request: MockRequest) -> Any:
        await asyncio.sleep(0)
        return {"user": request.token}

    server.reply("whoami", lookup)
    async with _client(server) as client:
        assert await client.request("echo", {"text": "hi"}, metadata={"trace": "t"}) == {
            "text": "hi"
        }
        assert await client.request("version") == {"version": 3}
        assert await client.request("whoami") == {"user": "tok-1"}
    assert [r.action for r in server.requests] == ["echo", "version", "whoami"]
    assert server.requests[0].payload == {"text": "hi"}
    assert server.requests[0].metadata == {"trace": "t"}
    assert server.handshakes[0].headers["Authorization"] == "Bearer tok-1"


async def test_scripted_errors_raise_the_exception_of_their_code() -> None:
    server = MockServer()
    server.reply("delete", ErrorReply(ErrorCode.FORBIDDEN, "admins only", {"role": "admin"}))

    def validate(request: MockRequest) -> Any:
        if "month" not in request.payload:
            raise ErrorReply(
                "VALIDATION_ERROR", "payload.month: required", {"field": "payload.month"}
            )
        return request.payload["month"]

    def broken(request: MockRequest) -> Any:
        raise RuntimeError("a bug in the test's script")

    server.reply("report", validate)
    server.reply("broken", broken)
    async with _client(server) as client:
        with pytest.raises(ForbiddenError, match="admins only") as refused:
            await client.request("delete")
        assert refused.value.details == {"role": "admin"}
        with pytest.raises(ValidationError) as invalid:
            await client.request("report", {})
        assert invalid.value.details == {"field": "payload.month"}
        assert await client.request("report", {"month": "2025-10"}) == "2025-10"
        with pytest.raises(NotFoundError, match="unknown action 'missing'"):
            await client.request("missing")
        with pytest.raises(InternalServerError, match="internal error"):
            await client.request("broken")
    assert [type(error) for error in server.errors] == [RuntimeError]


async def test_a_job_streams_its_progress_in_order_then_its_result() -> None:
    server = MockServer()
    server.job(
        "generate_report",
        progress=[10, Progress(50, "half", {"pages": 3}), Progress(100, "done")],
        result=lambda request: {"month": request.payload["month"]},
    )
    seen: list[ProgressFrame] = []
    async with _client(server) as client:
        result = await client.request(
            "generate_report", {"month": "2025-10"}, on_progress=seen.append, timeout=WAIT
        )
        job = await client.submit("generate_report", {"month": "2025-11"})
        updates = [update.percentage async for update in job.progress()]
        assert await job.result() == {"month": "2025-11"}
        assert job.status is RequestStatus.COMPLETED
    assert result == {"month": "2025-10"}
    assert [(p.seq, p.percentage, p.message, p.metadata) for p in seen] == [
        (1, 10.0, None, {}),
        (2, 50.0, "half", {"pages": 3}),
        (3, 100.0, "done", {}),
    ]
    assert updates == [10.0, 50.0, 100.0]
    assert [job.status for job in server.jobs] == [RequestStatus.COMPLETED] * 2


async def test_a_job_can_fail_after_its_progress() -> None:
    server = MockServer()
    server.job("export", progress=[30], error=ErrorReply(ErrorCode.TIMEOUT, "too slow"))
    seen: list[float] = []
    async with _client(server) as client:
        with pytest.raises(Exception, match="too slow") as failed:
            await client.request("export", on_progress=lambda p: seen.append(p.percentage))
    assert getattr(failed.value, "code", None) is ErrorCode.TIMEOUT
    assert seen == [30.0]
    assert server.jobs[0].status is RequestStatus.FAILED


async def test_a_held_job_is_driven_by_the_test() -> None:
    server = MockServer()
    server.job("import", hold=True)
    async with _client(server) as client:
        job = await client.submit("import", {"file": "a.csv"})
        [held] = await server.wait_for(lambda: server.jobs)
        assert held.id == job.id
        assert held.request.payload == {"file": "a.csv"}
        held.report(40, "reading", rows=400)
        update = await asyncio.wait_for(anext(aiter(job.progress())), WAIT)
        assert (update.percentage, update.metadata) == (40.0, {"rows": 400})
        held.complete({"rows": 1000})
        assert await asyncio.wait_for(job.result(), WAIT) == {"rows": 1000}
    with pytest.raises(RuntimeError, match="already ended"):
        held.report(100)


async def test_cancel_ends_a_queued_job_at_once_and_a_running_one_at_its_next_report() -> None:
    server = MockServer()
    server.job("work", hold=True)
    async with _client(server) as client:
        queued = await client.submit("work", {"n": 1})
        assert await queued.cancel() is RequestStatus.CANCELLED
        with pytest.raises(RequestCancelledError):
            await asyncio.wait_for(queued.result(), WAIT)

        running = await client.submit("work", {"n": 2})
        held = server.jobs[1]
        held.report(10)
        assert await running.cancel() is RequestStatus.PROCESSING
        assert held.cancel_requested
        held.report(20)  # where a real action would see the cancel
        with pytest.raises(RequestCancelledError):
            await asyncio.wait_for(running.result(), WAIT)
    assert [job.status for job in server.jobs] == [RequestStatus.CANCELLED] * 2
    assert [p.percentage for p in server.jobs[1].progress] == [10.0]


async def test_published_events_reach_subscribers_of_the_topic_only() -> None:
    server = MockServer()
    async with _client(server) as client:
        async with client.subscribe("news") as events:
            assert server.topics == {"news"}
            assert server.publish("other", "not for us") == 0
            assert server.publish("news", {"n": 1}) == 1
            server.publish("news", {"n": 2}, event_id="E2")
            first = await asyncio.wait_for(anext(events), WAIT)
            second = await asyncio.wait_for(anext(events), WAIT)
        await server.wait_for(lambda: not server.topics)
    assert [first.data, second.data] == [{"n": 1}, {"n": 2}]
    assert second.id == "E2"
    assert [frame.action for frame in server.received] == ["subscribe", "unsubscribe"]
    with pytest.raises(ValueError, match="does not match"):
        server.publish("bad#topic")


async def test_after_a_drop_the_client_reconnects_resubscribes_and_reattaches_its_job() -> None:
    server = MockServer()
    server.job("long", hold=True)
    async with _client(server) as client, client.subscribe("news") as events:
        job = await client.submit("long")
        held = server.jobs[0]
        held.report(25, "first quarter")

        assert server.drop() == 1
        # Nobody follows the job while the client is away: these frames are lost, as on AWS.
        held.report(75, "while away")
        held.complete("finished")
        assert held.status is RequestStatus.COMPLETED

        second = await server.wait_for(
            lambda: len(server.connections) == 2 and server.connections[1]
        )
        await server.wait_for(lambda: "news" in second.topics)
        server.publish("news", "after the drop")
        event = await asyncio.wait_for(anext(events), WAIT)
        assert await asyncio.wait_for(job.result(), WAIT) == "finished"

    assert event.data == "after the drop"
    assert [c.open for c in server.connections] == [False, False]
    restored = [frame.action for frame in server.connections[1].received]
    assert "subscribe" in restored
    assert "status" in restored
    assert [p.message for p in held.progress] == ["first quarter", "while away"]


async def test_a_refused_token_fails_the_connection() -> None:
    server = MockServer(tokens={"good"})
    with pytest.raises(AuthenticationFailed) as refused:
        await _client(server, token="bad").connect()
    assert refused.value.status_code == 401
    async with _client(server, token="good") as client:
        assert client.state is ConnectionState.CONNECTED
    assert [(h.token, h.accepted) for h in server.handshakes] == [("bad", False), ("good", True)]


async def test_a_revoked_token_ends_the_client_at_its_next_reconnect() -> None:
    server = MockServer()
    server.job("long", hold=True)
    async with _client(server, token="old") as client:
        job = await client.submit("long")
        server.revoke("old")
        server.drop()
        with pytest.raises(AuthenticationFailed):
            await asyncio.wait_for(job.result(), WAIT)
        assert client.closed


async def test_a_token_provider_replaces_a_revoked_token_on_reconnect() -> None:
    server = MockServer()
    server.reply("echo", lambda request: request.token)
    tokens = iter(["first", "second"])
    async with _client(server, token=None, token_provider=lambda: next(tokens)) as client:
        assert await client.request("echo") == "first"
        server.revoke("first")
        server.drop()
        await server.wait_for(lambda: len(server.open_connections) == 1)
        assert await client.request("echo", timeout=WAIT) == "second"


async def test_an_unreachable_server_is_retried_until_it_comes_back() -> None:
    server = MockServer()
    server.reply("ping.me", "pong")
    server.refuse_connections()
    with pytest.raises(ConnectionFailed, match="cannot reach"):
        await _client(server).connect()
    server.accept_connections()
    async with _client(server) as client:
        server.refuse_connections(503)
        server.drop()
        await server.wait_for(lambda: len(server.handshakes) >= 4)
        server.accept_connections()
        assert await client.request("ping.me", timeout=WAIT) == "pong"
    assert [h.accepted for h in server.handshakes[:2]] == [False, True]


async def test_unanswered_heartbeats_make_the_client_reconnect() -> None:
    server = MockServer()
    server.answer_pings = False
    async with _client(server, heartbeat_interval=0.01, heartbeat_timeout=0.01):
        await server.wait_for(lambda: len(server.connections) >= 2)
    assert server.received[0].action == "ping"


async def test_a_resent_request_id_is_idempotent_for_jobs_and_a_conflict_otherwise() -> None:
    server = MockServer()
    server.job("work", result="once")
    async with _client(server) as client:
        assert await client.request("work", {"n": 1}, request_id="job-1") == "once"
        assert await client.request("work", {"n": 1}, request_id="job-1") == "once"
        with pytest.raises(ConflictError):
            await client.request("work", {"n": 2}, request_id="job-1")
    assert len(server.jobs) == 1


async def test_frames_the_real_server_refuses_are_refused_the_same_way() -> None:
    server = MockServer()
    socket = await server.connect(
        "ws://streamer.test/ws?token=t", open_timeout=None, user_agent_header="test"
    )
    await socket.send('{"action": "subscribe", "id": "s1", "payload": {"topic": "a#b"}}')
    await socket.send("not json")
    await socket.close()
    frames = [json.loads(text) async for text in socket]
    assert [(f["request_id"], f["code"]) for f in frames] == [
        ("s1", "VALIDATION_ERROR"),
        (None, "VALIDATION_ERROR"),
    ]
    assert frames[0]["details"] == {"field": "payload.topic"}
    assert server.connections[0].token == "t"


def test_the_blocking_client_takes_the_same_seam() -> None:
    server = MockServer()
    server.job("work", progress=[50, 100], result={"done": True})
    with blocking.StreamerClient(
        "ws://streamer.test/ws", token="t", connect=server.connect
    ) as client:
        job = client.submit("work", timeout=WAIT)
        assert [update.seq for update in job.progress()] == [1, 2]
        assert job.result(timeout=WAIT) == {"done": True}
        with client.subscribe("news") as events:
            server.publish("news", "from the test's thread")
            assert events.receive(timeout=WAIT).data == "from the test's thread"
