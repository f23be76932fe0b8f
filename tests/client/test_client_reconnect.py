"""Staying connected: drops mid-job, re-attachment, resends, token refresh, queueing, renewal."""

from __future__ import annotations

import asyncio
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
    event,
    progress,
    response,
    status,
    subscribed,
    until,
    until_at_least,
)
from streamer_client import (
    AuthenticationFailed,
    ConnectionFailed,
    ConnectionState,
    Job,
    NotFoundError,
    ProgressFrame,
    StreamerClient,
)
from streamer_client._connection import DEFAULT_HEARTBEAT_INTERVAL

MakeClient = Callable[..., StreamerClient]

# The gateway closes connections idle for 10 minutes.
GATEWAY_IDLE_TIMEOUT = 600.0


def count_resolutions(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record every attempt to end a job, so a second delivery is seen even if it is a no-op."""
    outcomes: list[object] = []
    resolve, fail = Job._resolve, Job._fail

    def counting_resolve(job: Job, result: object) -> None:
        outcomes.append(result)
        resolve(job, result)

    def counting_fail(job: Job, error: BaseException) -> None:
        outcomes.append(error)
        fail(job, error)

    monkeypatch.setattr(Job, "_resolve", counting_resolve)
    monkeypatch.setattr(Job, "_fail", counting_fail)
    return outcomes


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
    server: FakeServer, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
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
        await conn.send(error(rid, "INTERNAL_ERROR", "a stale failure"))
        await conn.send(progress(rid, 5, 100.0))
        await answer_basics(conn)

    server.script = script
    resolutions = count_resolutions(monkeypatch)
    seen: list[ProgressFrame] = []
    results: list[object] = []
    async with make_client() as client:
        results.append(
            await asyncio.wait_for(client.request("work", on_progress=seen.append), WAIT)
        )
        # Answered after the duplicates on the same socket: they have all been handled by now.
        assert await asyncio.wait_for(client.request("echo", {"x": 1}), WAIT) == {"x": 1}
    assert results == ["R"]
    assert resolutions == ["R", {"x": 1}]
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


async def test_unanswered_request_fails_with_an_unknown_outcome_by_default(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        if conn.index == 0:
            await conn.recv()
            await conn.close()
            return
        await answer_basics(conn)

    server.script = script
    async with make_client() as client:
        with pytest.raises(ConnectionFailed, match="outcome unknown"):
            await asyncio.wait_for(client.request("charge_card", {"n": 1}), WAIT)
        # The client itself carries on: only the call in flight paid for the drop.
        assert await asyncio.wait_for(client.request("echo", {"n": 2}), WAIT) == {"n": 2}
        assert client._jobs == {}
    assert len(server.actions("charge_card")) == 1


async def test_unanswered_submit_fails_with_an_unknown_outcome_by_default(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        if conn.index == 0:
            await conn.recv()
            await conn.close()
            return
        await answer_basics(conn)

    server.script = script
    async with make_client() as client:
        with pytest.raises(ConnectionFailed, match="outcome unknown"):
            await asyncio.wait_for(client.submit("work"), WAIT)
        await until(lambda: client.state is ConnectionState.CONNECTED)
    assert len(server.actions("work")) == 1


async def test_unanswered_request_is_resent_with_the_same_id_when_asked(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        frame = await conn.recv()
        if conn.index == 0:
            await conn.close()
            return
        await conn.send(response(frame["id"], "second time lucky"))

    server.script = script
    async with make_client(resend_unanswered=True) as client:
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
    # The request may be written before the drop; it is idempotent, so resending is safe.
    async with make_client(token=None, token_provider=provider, resend_unanswered=True) as client:
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
    client = make_client(on_state_change=from_callback.append, resend_unanswered=True)
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
        first = await server.connection(0)
        await server.connection(1)
        server.auto_pong = True
    assert len(server.pings) >= 1
    # The client gave up on the silent socket itself: its close frame came first.
    await first.wait_closed()
    assert first.ws.protocol.close_rcvd_then_sent is True


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
    async with make_client(token=None, token_provider=flaky, resend_unanswered=True) as client:
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


async def test_status_refusals_are_counted_per_query_not_over_the_jobs_life(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        if conn.index == 0:
            rid = (await conn.recv())["id"]
            await conn.send(ack(rid))
            await conn.close()
            return
        for _ in range(4):
            query = await conn.recv_action("status")
            await conn.send(error(query["id"], "RATE_LIMITED", "slow down"))
        query = await conn.recv_action("status")
        rid = query["payload"]["request_id"]
        if conn.index == 1:
            await conn.send(status(query["id"], rid, "PROCESSING", seq=1, percentage=50.0))
            await conn.close()
            return
        await conn.send(status(query["id"], rid, "COMPLETED", result="patience"))

    server.script = script
    async with make_client() as client:
        job = await asyncio.wait_for(client.submit("work"), WAIT)
        assert await asyncio.wait_for(job.result(), WAIT) == "patience"
    # Eight refusals in all, but never more than four in a row for one query.
    assert len(server.actions("status")) == 10
    assert len(server.connections) == 3


async def _restore_script(conn: FakeConnection) -> None:
    """Connection 0 serves normally; later ones refuse each frame's first copy as rate limited."""
    refused: set[str] = set()
    while True:
        frame = await conn.recv(within=3600)
        action, frame_id = frame["action"], frame["id"]
        if conn.index > 0 and frame_id not in refused:
            refused.add(frame_id)
            limit = {"limit": 100, "window_seconds": 60}
            await conn.send(error(frame_id, "RATE_LIMITED", "more than 100 messages", limit))
        elif action == "subscribe":
            await conn.send(subscribed(frame_id, frame["payload"]["topic"]))
            if conn.index > 0:
                await conn.send(event("news", "after", "E2"))
        elif action == "work":
            await conn.send(ack(frame_id))
        elif action == "status":
            job_id = frame["payload"]["request_id"]
            await conn.send(status(frame_id, job_id, "COMPLETED", result="job done"))
        else:
            await conn.send(response(frame_id, frame["payload"]))


async def test_rate_limited_restore_frames_are_sent_again_after_a_backoff(
    server: FakeServer, make_client: MakeClient
) -> None:
    server.script = _restore_script
    async with make_client() as client, client.subscribe("news") as events:
        job = await asyncio.wait_for(client.submit("work"), WAIT)
        await _disconnect_and_hold(server, client)
        queued = asyncio.create_task(client.request("echo", {"n": 1}))
        await until(
            lambda: client.state is ConnectionState.RECONNECTING and len(client._calls) == 1
        )
        server.reject_with = None
        assert (await asyncio.wait_for(anext(events), WAIT)).data == "after"
        assert await asyncio.wait_for(job.result(), WAIT) == "job done"
        assert await asyncio.wait_for(queued, WAIT) == {"n": 1}
    # Each restore frame went out twice with the same id: refused, then served.
    for action, copies in (("subscribe", 3), ("status", 2), ("echo", 2)):
        frames = server.actions(action)
        assert len(frames) == copies, action
        assert frames[-1]["id"] == frames[-2]["id"]
    assert len(server.actions("work")) == 1


def test_the_offline_queue_leaves_room_under_the_server_rate_limit() -> None:
    client = StreamerClient("ws://127.0.0.1:1/")
    # The server allows 100 messages a minute; a restore also carries topics and jobs.
    assert client._max_queued <= 50


@pytest.mark.parametrize("http_status", [429, 408])
async def test_throttled_reconnect_handshake_is_retried(
    server: FakeServer, make_client: MakeClient, http_status: int
) -> None:
    async def script(conn: FakeConnection) -> None:
        if conn.index == 0:
            rid = (await conn.recv())["id"]
            await conn.send(ack(rid))
            server.reject_with = http_status
            await conn.close()
            return
        query = await conn.recv_action("status")
        rid = query["payload"]["request_id"]
        await conn.send(status(query["id"], rid, "COMPLETED", result="through"))

    server.script = script
    async with make_client() as client:
        job = await asyncio.wait_for(client.submit("work"), WAIT)
        await until(lambda: len(server.handshakes) >= 3)
        server.reject_with = None
        assert await asyncio.wait_for(job.result(), WAIT) == "through"
    assert len(server.connections) == 2


async def test_a_server_that_drops_every_new_connection_exhausts_the_attempts(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        await conn.close()

    server.script = script
    states: list[ConnectionState] = []
    client = make_client(
        max_reconnect_attempts=3, backoff_reset_after=3600.0, on_state_change=states.append
    )
    async with client:
        await until(lambda: client.state is ConnectionState.CLOSED)
        assert client.closed
        with pytest.raises(ConnectionFailed, match="3 reconnect attempts"):
            await client.request("echo")
    # The first connection and three reconnects, each accepted and dropped: no endless loop.
    assert len(server.handshakes) == 4
    assert states.count(ConnectionState.RECONNECTING) == 3


async def test_without_reconnect_the_connection_is_not_renewed(
    server: FakeServer, make_client: MakeClient
) -> None:
    async with make_client(
        reconnect=False, max_connection_age=0.001, heartbeat_interval=0.01
    ) as client:
        # Three heartbeat intervals outlast the age limit many times over.
        await until(lambda: len(server.pings) >= 3)
        assert client.state is ConnectionState.CONNECTED
    assert len(server.connections) == 1


async def test_renewal_lets_calls_in_flight_finish_on_the_old_socket(
    server: FakeServer, make_client: MakeClient
) -> None:
    release = asyncio.Event()
    ages: asyncio.Queue[None] = asyncio.Queue()
    max_age = 7200.0

    async def controlled_sleep(seconds: float) -> None:
        if seconds == max_age:
            await ages.get()
        else:
            await asyncio.sleep(seconds)

    async def script(conn: FakeConnection) -> None:
        if conn.index == 0:
            frame = await conn.recv_action("slow")
            await release.wait()
            await conn.send(response(frame["id"], "answered on the old socket"))
        await answer_basics(conn)

    server.script = script
    client = make_client(max_connection_age=max_age)
    client._link._sleep = controlled_sleep
    async with client:
        slow = asyncio.create_task(client.request("slow"))
        await until(lambda: len(server.actions("slow")) == 1)
        ages.put_nowait(None)
        # The renewal has begun: new frames wait for the next socket ...
        await until(lambda: not client._link.connected)
        release.set()
        # ... and the call already written is answered rather than failed as "outcome unknown".
        assert await asyncio.wait_for(slow, WAIT) == "answered on the old socket"
        await server.connection(1)
        assert await asyncio.wait_for(client.request("echo", {"n": 2}), WAIT) == {"n": 2}
    assert len(server.actions("slow")) == 1


async def test_connect_can_be_tried_again_after_it_failed(
    server: FakeServer, make_client: MakeClient
) -> None:
    server.script = answer_basics
    server.reject_with = 503
    client = make_client()
    with pytest.raises(ConnectionFailed):
        await client.connect()
    server.reject_with = None
    async with client:
        assert await asyncio.wait_for(client.request("echo", {"a": 1}), WAIT) == {"a": 1}


async def test_a_lost_final_frame_is_recovered_by_polling_status(
    server: FakeServer, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def script(conn: FakeConnection) -> None:
        rid = (await conn.recv_action("work"))["id"]
        await conn.send(ack(rid))
        # The job's complete frame never comes; the client has to ask.
        query = await conn.recv_action("status")
        assert query["payload"] == {"request_id": rid}
        await conn.send(status(query["id"], rid, "COMPLETED", result="recovered"))
        await conn.send(complete(rid, "late duplicate"))
        await answer_basics(conn)

    server.script = script
    resolutions = count_resolutions(monkeypatch)
    async with make_client(heartbeat_interval=0.01) as client:
        job = await asyncio.wait_for(client.submit("work"), WAIT)
        assert await asyncio.wait_for(job.result(), WAIT) == "recovered"
        assert await asyncio.wait_for(client.request("echo", {"x": 1}), WAIT) == {"x": 1}
    assert resolutions == ["recovered", {"x": 1}]
    assert len(server.connections) == 1


async def test_jobs_that_are_heard_from_are_not_polled(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        rid = (await conn.recv_action("work"))["id"]
        await conn.send(ack(rid))
        for seq in range(1, 6):
            # One progress report per heartbeat keeps the job from looking quiet.
            await until_at_least(server.pings, seq)
            await conn.send(progress(rid, seq, seq * 10.0))
        await conn.send(complete(rid, "done"))

    server.script = script
    async with make_client(heartbeat_interval=0.01) as client:
        job = await asyncio.wait_for(client.submit("work"), WAIT)
        assert await asyncio.wait_for(job.result(), WAIT) == "done"
    assert server.actions("status") == []


async def test_heartbeat_default_interval_and_spacing(server: FakeServer) -> None:
    asked: list[float] = []
    ticks: asyncio.Queue[None] = asyncio.Queue()

    async def controlled_sleep(seconds: float) -> None:
        asked.append(seconds)
        await ticks.get()

    settings = {key: value for key, value in FAST.items() if key != "heartbeat_interval"}
    client = StreamerClient(server.url, token="t", max_connection_age=None, **settings)
    client._link._sleep = controlled_sleep
    async with client:
        for interval in range(1, 4):
            # The loop waits one interval before each ping, and pings once per interval.
            await until_at_least(asked, interval)
            assert len(asked) == interval
            assert len(server.pings) == interval - 1
            ticks.put_nowait(None)
            await until_at_least(server.pings, interval)
            assert len(server.pings) == interval
    assert asked == [DEFAULT_HEARTBEAT_INTERVAL] * 4
    assert DEFAULT_HEARTBEAT_INTERVAL < GATEWAY_IDLE_TIMEOUT
