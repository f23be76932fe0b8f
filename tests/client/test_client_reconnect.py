"""Staying connected: drops mid-job, re-attachment, resends, token refresh, queueing, renewal."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from client_fakes import (
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
    AuthenticationFailed,
    ConnectionFailed,
    ConnectionState,
    NotFoundError,
    ProgressFrame,
    StreamerClient,
)

MakeClient = Callable[..., StreamerClient]


async def test_server_closing_mid_job_without_reconnect_fails_the_job(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        rid = (await conn.recv())["id"]
        await conn.send(ack(rid))
        await conn.send(progress(rid, 1, 40.0))
        await conn.close()

    server.script = script
    async with make_client(reconnect=False) as client:
        job = await asyncio.wait_for(client.submit("work"), WAIT)
        with pytest.raises(ConnectionFailed):
            await asyncio.wait_for(job.result(), WAIT)
        assert client.state is ConnectionState.CLOSED
        assert client.closed
        with pytest.raises(ConnectionFailed):
            await client.request("echo")
    assert [p.seq for p in [job.latest_progress] if p] == [1]


async def test_completion_while_disconnected_is_delivered_once_via_status(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        if conn.index == 0:
            rid = (await conn.recv())["id"]
            await conn.send(ack(rid))
            await conn.send(progress(rid, 1, 25.0))
            await conn.close()
            return
        query = await conn.recv_action("status")
        rid = query["payload"]["request_id"]
        await conn.send(status(query["id"], rid, "COMPLETED", seq=4, percentage=100.0, result="R"))
        # The same completion pushed again by the server must not reach the caller twice.
        await conn.send(complete(rid, "R-again"))
        await conn.send(progress(rid, 5, 100.0))

    server.script = script
    seen: list[ProgressFrame] = []
    results: list[object] = []
    async with make_client() as client:
        results.append(
            await asyncio.wait_for(client.request("work", on_progress=seen.append), WAIT)
        )
        await until(lambda: len(server.received) >= 2)
    assert results == ["R"]
    assert [p.seq for p in seen] == [1, 4]
    assert len(server.actions("work")) == 1
    assert len(server.connections) == 2


async def test_reattached_job_resumes_progress_without_repeats(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        if conn.index == 0:
            rid = (await conn.recv())["id"]
            await conn.send(ack(rid))
            await conn.send(progress(rid, 1, 10.0))
            await conn.send(progress(rid, 2, 20.0))
            await conn.close()
            return
        query = await conn.recv_action("status")
        rid = query["payload"]["request_id"]
        await conn.send(status(query["id"], rid, "PROCESSING", seq=3, percentage=30.0))
        for seq in (2, 3, 4):
            await conn.send(progress(rid, seq, seq * 10.0))
        await conn.send(complete(rid, "done"))

    server.script = script
    async with make_client() as client:
        job = await asyncio.wait_for(client.submit("work"), WAIT)
        seqs = [p.seq async for p in job.progress()]
        assert await job.result() == "done"
    assert seqs == [1, 2, 3, 4]


async def test_stale_snapshot_progress_is_not_delivered_again(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        if conn.index == 0:
            rid = (await conn.recv())["id"]
            await conn.send(ack(rid))
            await conn.send(progress(rid, 1, 10.0))
            await conn.send(progress(rid, 2, 20.0))
            await conn.close()
            return
        query = await conn.recv_action("status")
        rid = query["payload"]["request_id"]
        await conn.send(status(query["id"], rid, "PROCESSING", seq=2, percentage=20.0))
        await conn.send(progress(rid, 3, 30.0))
        await conn.send(complete(rid, "done"))

    server.script = script
    seen: list[int] = []
    async with make_client() as client:
        result = await asyncio.wait_for(
            client.request("work", on_progress=lambda p: seen.append(p.seq)), WAIT
        )
    assert result == "done"
    assert seen == [1, 2, 3]


async def test_job_unknown_after_reconnect_fails_with_not_found(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        if conn.index == 0:
            rid = (await conn.recv())["id"]
            await conn.send(ack(rid))
            await conn.close()
            return
        await answer_basics(conn)

    server.script = script
    async with make_client() as client:
        job = await asyncio.wait_for(client.submit("work"), WAIT)
        with pytest.raises(NotFoundError):
            await asyncio.wait_for(job.result(), WAIT)


async def test_unanswered_request_is_resent_with_the_same_id(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        frame = await conn.recv()
        if conn.index == 0:
            await conn.close()
            return
        await conn.send(response(frame["id"], "second time lucky"))

    server.script = script
    async with make_client() as client:
        result = await asyncio.wait_for(client.request("echo", {"n": 1}), WAIT)
    assert result == "second time lucky"
    first, second = server.actions("echo")
    assert first["id"] == second["id"]
    assert first["payload"] == second["payload"] == {"n": 1}


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_token_provider_is_asked_again_on_every_reconnect(
    server: FakeServer, make_client: MakeClient, asynchronous: bool
) -> None:
    issued: list[str] = []

    def next_token() -> str:
        issued.append(f"tok-{len(issued) + 1}")
        return issued[-1]

    async def next_token_async() -> str:
        return next_token()

    async def script(conn: FakeConnection) -> None:
        frame = await conn.recv()
        if conn.index == 0:
            await conn.close()
            return
        await conn.send(response(frame["id"], "ok"))

    server.script = script
    provider = next_token_async if asynchronous else next_token
    async with make_client(token=None, token_provider=provider) as client:
        assert await asyncio.wait_for(client.request("echo"), WAIT) == "ok"
    assert issued == ["tok-1", "tok-2"]
    assert [h["Authorization"] for h in server.handshakes] == ["Bearer tok-1", "Bearer tok-2"]


async def test_refused_handshake_raises_authentication_failed(
    server: FakeServer, make_client: MakeClient
) -> None:
    server.reject_with = 401
    client = make_client()
    with pytest.raises(AuthenticationFailed) as caught:
        await client.connect()
    assert caught.value.status_code == 401
    assert "tok-1" not in str(caught.value)
    assert client.state is ConnectionState.CLOSED


async def test_unreachable_server_raises_connection_failed() -> None:
    client = StreamerClient("ws://127.0.0.1:9/nothing", token="t", open_timeout=2.0)
    with pytest.raises(ConnectionFailed, match="cannot connect"):
        await client.connect()


async def test_reconnect_gives_up_after_the_attempt_limit(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        rid = (await conn.recv())["id"]
        await conn.send(ack(rid))
        server.reject_with = 503
        await conn.close()

    server.script = script
    states: list[ConnectionState] = []
    async with make_client(max_reconnect_attempts=3, on_state_change=states.append) as client:
        job = await asyncio.wait_for(client.submit("work"), WAIT)
        with pytest.raises(ConnectionFailed, match="3 reconnect attempts"):
            await asyncio.wait_for(job.result(), WAIT)
    assert len(server.handshakes) == 4
    assert states[-2:] == [ConnectionState.RECONNECTING, ConnectionState.CLOSED]


async def test_refused_reconnect_handshake_stops_at_once(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        rid = (await conn.recv())["id"]
        await conn.send(ack(rid))
        server.reject_with = 403
        await conn.close()

    server.script = script
    async with make_client() as client:
        job = await asyncio.wait_for(client.submit("work"), WAIT)
        with pytest.raises(AuthenticationFailed):
            await asyncio.wait_for(job.result(), WAIT)
    assert len(server.handshakes) == 2


async def _disconnect_and_hold(server: FakeServer, client: StreamerClient) -> None:
    """Drop the client's socket and keep refusing it until the test lets it back in."""
    conn = await server.connection(0)
    server.reject_with = 503
    await conn.close()
    await until(lambda: client.state is ConnectionState.RECONNECTING)


async def test_requests_while_disconnected_wait_in_a_bounded_queue(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        if conn.index > 0:
            await answer_basics(conn)

    server.script = script
    async with make_client(max_queued=2) as client:
        await _disconnect_and_hold(server, client)
        first = asyncio.create_task(client.request("echo", {"n": 1}))
        second = asyncio.create_task(client.request("echo", {"n": 2}))
        await until(lambda: len(client._calls) == 2)
        with pytest.raises(ConnectionFailed, match="already wait"):
            await client.request("echo", {"n": 3})
        server.reject_with = None
        results = await asyncio.wait_for(asyncio.gather(first, second), WAIT)
    assert list(results) == [{"n": 1}, {"n": 2}]
    assert [frame["payload"] for frame in server.actions("echo")] == [{"n": 1}, {"n": 2}]


async def test_fail_fast_client_is_usable_as_soon_as_connect_returns(
    server: FakeServer, make_client: MakeClient
) -> None:
    server.script = answer_basics
    async with make_client(queue_while_disconnected=False) as client:
        assert client.state is ConnectionState.CONNECTED
        assert await asyncio.wait_for(client.request("echo", {"a": 1}), WAIT) == {"a": 1}


async def test_requests_while_disconnected_fail_fast_when_asked(
    server: FakeServer, make_client: MakeClient
) -> None:
    async with make_client(queue_while_disconnected=False) as client:
        await _disconnect_and_hold(server, client)
        with pytest.raises(ConnectionFailed, match="not connected"):
            await client.request("echo")
        with pytest.raises(ConnectionFailed, match="not connected"):
            async with client.subscribe("news"):
                pass
        server.reject_with = None
    assert server.actions("echo") == []


async def test_connection_states_are_observable(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        if conn.index == 0:
            await conn.recv()
            await conn.close()
            return
        await answer_basics(conn)

    server.script = script
    from_callback: list[ConnectionState] = []
    from_iterator: list[ConnectionState] = []
    client = make_client(on_state_change=from_callback.append)
    removed: list[ConnectionState] = []
    stop = client.on_state_change(removed.append)
    stop()

    async def watch() -> None:
        async for state in client.states():
            from_iterator.append(state)

    async with client:
        watcher = asyncio.create_task(watch())
        assert await asyncio.wait_for(client.request("echo", {"a": 1}), WAIT) == {"a": 1}
    await asyncio.wait_for(watcher, WAIT)
    expected = [
        ConnectionState.CONNECTING,
        ConnectionState.CONNECTED,
        ConnectionState.RECONNECTING,
        ConnectionState.CONNECTED,
        ConnectionState.CLOSED,
    ]
    assert from_callback == expected
    assert from_iterator == expected[1:]
    assert removed == []


async def test_heartbeat_pings_the_server(server: FakeServer, make_client: MakeClient) -> None:
    async with make_client(heartbeat_interval=0.01) as client:
        await until(lambda: len(server.pings) >= 3)
        assert client.state is ConnectionState.CONNECTED
    assert len(server.connections) == 1
    assert all(ping["payload"] == {} for ping in server.pings)


async def test_heartbeat_refused_by_the_server_still_counts_as_alive(
    server: FakeServer, make_client: MakeClient
) -> None:
    server.ping_answer = lambda request_id: error(request_id, "RATE_LIMITED", "slow down")
    async with make_client(heartbeat_interval=0.01, heartbeat_timeout=5.0) as client:
        await until(lambda: len(server.pings) >= 3)
        assert client.state is ConnectionState.CONNECTED
    assert len(server.connections) == 1


async def test_unanswered_heartbeat_reconnects(server: FakeServer, make_client: MakeClient) -> None:
    server.auto_pong = False
    async with make_client(heartbeat_interval=0.01, heartbeat_timeout=0.05):
        await server.connection(1)
        server.auto_pong = True
    assert len(server.pings) >= 1


async def test_connection_is_renewed_before_its_age_limit_without_losing_the_job(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        while True:
            frame = await conn.recv(within=3600)
            if frame["action"] == "work":
                await conn.send(ack(frame["id"]))
            elif frame["action"] == "status" and conn.index > 0:
                rid = frame["payload"]["request_id"]
                await conn.send(status(frame["id"], rid, "COMPLETED", result={"renewed": True}))

    server.script = script
    async with make_client(max_connection_age=0.05) as client:
        job = await asyncio.wait_for(client.submit("work"), WAIT)
        assert await asyncio.wait_for(job.result(), WAIT) == {"renewed": True}
    assert {frame["id"] for frame in server.actions("work")} == {job.id}
    assert len(server.connections) >= 2


async def test_failing_token_provider_fails_the_first_connection_clearly(
    server: FakeServer, make_client: MakeClient
) -> None:
    def broken() -> str:
        raise RuntimeError("identity provider down")

    client = make_client(token=None, token_provider=broken)
    with pytest.raises(ConnectionFailed, match="identity provider down"):
        await client.connect()
    assert server.handshakes == []


async def test_token_provider_failure_on_reconnect_is_retried(
    server: FakeServer, make_client: MakeClient
) -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(len(calls))
        if len(calls) == 2:
            raise RuntimeError("identity provider blinked")
        return f"tok-{len(calls)}"

    async def script(conn: FakeConnection) -> None:
        frame = await conn.recv()
        if conn.index == 0:
            await conn.close()
            return
        await conn.send(response(frame["id"], "ok"))

    server.script = script
    async with make_client(token=None, token_provider=flaky) as client:
        assert await asyncio.wait_for(client.request("echo"), WAIT) == "ok"
    assert len(calls) == 3
    assert [h["Authorization"] for h in server.handshakes] == ["Bearer tok-1", "Bearer tok-3"]


async def test_transient_refusal_of_status_is_retried(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        if conn.index == 0:
            rid = (await conn.recv())["id"]
            await conn.send(ack(rid))
            await conn.close()
            return
        first = await conn.recv_action("status")
        await conn.send(error(first["id"], "RATE_LIMITED", "slow down"))
        second = await conn.recv_action("status")
        rid = second["payload"]["request_id"]
        await conn.send(status(second["id"], rid, "COMPLETED", result="patience"))

    server.script = script
    async with make_client() as client:
        job = await asyncio.wait_for(client.submit("work"), WAIT)
        assert await asyncio.wait_for(job.result(), WAIT) == "patience"
    assert len(server.actions("status")) == 2
