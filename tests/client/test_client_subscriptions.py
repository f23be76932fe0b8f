"""Topic subscriptions: delivery, sharing one server subscription, refusal, restore on reconnect."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from client_fakes import (
    FAST,
    WAIT,
    FakeConnection,
    FakeServer,
    answer_basics,
    error,
    event,
    response,
    subscribed,
    unsubscribed,
    until,
)
from streamer_client import (
    ConnectionFailed,
    ConnectionState,
    EventFrame,
    ForbiddenError,
    InvalidRequest,
    RateLimitedError,
    StreamerClient,
)
from streamer_client.testing import MockServer

MakeClient = Callable[..., StreamerClient]


async def test_events_of_a_topic_arrive_in_order(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        frame = await conn.recv_action("subscribe")
        await conn.send(subscribed(frame["id"], "news"))
        await conn.send(event("other", "not for us", "E0"))
        for n in range(3):
            await conn.send(event("news", {"n": n}, f"E{n + 1}"))
        await answer_basics(conn)

    server.script = script
    async with make_client() as client, client.subscribe("news") as events:
        received: list[EventFrame] = []
        async for item in events:
            received.append(item)
            if len(received) == 3:
                break
    assert [item.data for item in received] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert {item.topic for item in received} == {"news"}
    assert server.actions("subscribe")[0]["payload"] == {"topic": "news"}
    assert server.actions("unsubscribe")[0]["payload"] == {"topic": "news"}


async def test_two_local_subscribers_share_one_server_subscription(
    server: FakeServer, make_client: MakeClient
) -> None:
    server.script = answer_basics
    async with make_client() as client:
        async with client.subscribe("news") as first:
            async with client.subscribe("news") as second:
                conn = await server.connection(0)
                await conn.send(event("news", "both", "E1"))
                one = await asyncio.wait_for(anext(first), WAIT)
                two = await asyncio.wait_for(anext(second), WAIT)
                assert one.data == two.data == "both"
            assert server.actions("unsubscribe") == []
            await conn.send(event("news", "still here", "E2"))
            assert (await asyncio.wait_for(anext(first), WAIT)).data == "still here"
        await until(lambda: len(server.actions("unsubscribe")) == 1)
    assert len(server.actions("subscribe")) == 1


async def test_refused_subscription_raises_its_typed_error(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        frame = await conn.recv_action("subscribe")
        await conn.send(error(frame["id"], "FORBIDDEN", "not your topic"))
        await answer_basics(conn)

    server.script = script
    async with make_client() as client:
        with pytest.raises(ForbiddenError, match="not your topic"):
            async with client.subscribe("secret"):
                pass
        assert len(client._topics) == 0


async def test_invalid_topic_is_refused_locally(
    server: FakeServer, make_client: MakeClient
) -> None:
    async with make_client() as client:
        with pytest.raises(InvalidRequest):
            async with client.subscribe("bad#topic"):
                pass
    assert server.actions("subscribe") == []


async def test_topics_are_subscribed_again_after_reconnect() -> None:
    server = MockServer()
    client = StreamerClient("ws://test", **FAST, token="tok-1", connect=server.connect)
    async with client, client.subscribe("news") as events:
        server.publish("news", "before", event_id="E1")
        first = await asyncio.wait_for(anext(events), WAIT)
        server.drop()
        await server.wait_for(lambda: "news" in server.topics)
        server.publish("news", "after", event_id="E2")
        second = await asyncio.wait_for(anext(events), WAIT)
    assert [first.data, second.data] == ["before", "after"]
    subscribes = [frame for frame in server.received if frame.action == "subscribe"]
    assert [frame.payload["topic"] for frame in subscribes] == ["news", "news"]
    assert len(server.connections) == 2


async def test_subscribing_while_disconnected_completes_after_reconnect(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        if conn.index > 0:
            await answer_basics(conn)

    server.script = script
    async with make_client() as client:
        conn = await server.connection(0)
        server.reject_with = 503
        await conn.close()
        await until(lambda: client.state is ConnectionState.RECONNECTING)

        async def listen() -> object:
            async with client.subscribe("news") as events:
                return (await anext(events)).data

        listener = asyncio.create_task(listen())
        server.reject_with = None
        await until(lambda: len(server.actions("subscribe")) == 1)
        second = await server.connection(1)
        await second.send(event("news", "hello"))
        assert await asyncio.wait_for(listener, WAIT) == "hello"
    assert len(server.actions("subscribe")) == 1


async def test_closing_the_client_ends_iteration(
    server: FakeServer, make_client: MakeClient
) -> None:
    server.script = answer_basics
    client = make_client()
    async with client, client.subscribe("news") as events:
        await client.close()
        assert [item async for item in events] == []


async def test_giving_up_on_the_connection_ends_iteration_with_the_error(
    server: FakeServer, make_client: MakeClient
) -> None:
    server.script = answer_basics
    async with make_client(reconnect=False) as client, client.subscribe("news") as events:
        conn = await server.connection(0)
        await conn.close()
        with pytest.raises(ConnectionFailed):
            await asyncio.wait_for(anext(events), WAIT)


async def test_a_slow_consumer_loses_the_oldest_events(
    server: FakeServer, make_client: MakeClient
) -> None:
    server.script = answer_basics
    async with make_client(max_buffered_events=2) as client, client.subscribe("n") as events:
        conn = await server.connection(0)
        for n in range(5):
            await conn.send(event("n", n, f"E{n}"))
        await until(lambda: events.dropped == 3)
        assert [(await anext(events)).data for _ in range(2)] == [3, 4]


async def test_cancelling_the_subscriber_while_it_leaves_still_cancels_it(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        frame = await conn.recv_action("subscribe")
        await conn.send(subscribed(frame["id"], "news"))
        await conn.recv_action("unsubscribe")  # never confirmed

    server.script = script
    reached: list[str] = []
    async with make_client() as client:

        async def listen() -> None:
            async with client.subscribe("news"):
                pass
            reached.append("after the block")

        listener = asyncio.create_task(listen())
        await until(lambda: len(server.actions("unsubscribe")) == 1)
        listener.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(listener, WAIT)
    assert reached == []


async def test_subscribe_cancelled_before_confirmation_takes_the_topic_back(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        await conn.recv_action("subscribe")  # left unconfirmed
        frame = await conn.recv_action("unsubscribe")
        await conn.send(unsubscribed(frame["id"], frame["payload"]["topic"]))
        await answer_basics(conn)

    server.script = script
    async with make_client() as client:

        async def listen() -> None:
            async with client.subscribe("news"):
                pass

        listener = asyncio.create_task(listen())
        await until(lambda: len(server.actions("subscribe")) == 1)
        listener.cancel()
        with pytest.raises(asyncio.CancelledError):
            await listener
        await until(lambda: len(server.actions("unsubscribe")) == 1)
        assert len(client._topics) == 0
    assert server.actions("unsubscribe")[0]["payload"] == {"topic": "news"}


async def test_an_event_delivered_twice_reaches_subscribers_once(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        frame = await conn.recv_action("subscribe")
        await conn.send(subscribed(frame["id"], "news"))
        await conn.send(event("news", "first", "01JDQ40A1B2C3D4E5F6G7H8J9K"))
        await conn.send(event("news", "first", "01JDQ40A1B2C3D4E5F6G7H8J9K"))
        await conn.send(event("news", "second", "01JDQ40A1B2C3D4E5F6G7H8J9M"))
        await answer_basics(conn)

    server.script = script
    async with make_client() as client, client.subscribe("news") as events:
        first = await asyncio.wait_for(anext(events), WAIT)
        second = await asyncio.wait_for(anext(events), WAIT)
    assert [first.data, second.data] == ["first", "second"]


async def test_subscribes_waiting_for_a_socket_count_against_the_queue(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        if conn.index > 0:
            await answer_basics(conn)

    server.script = script
    async with make_client(max_queued=1) as client:
        conn = await server.connection(0)
        server.reject_with = 503
        await conn.close()
        await until(lambda: client.state is ConnectionState.RECONNECTING)

        async def listen() -> None:
            async with client.subscribe("news"):
                pass

        waiting = asyncio.create_task(listen())
        await until(lambda: client._topics.unconfirmed() == 1)
        with pytest.raises(ConnectionFailed, match="already wait"):
            await client.request("echo")
        server.reject_with = None
        await asyncio.wait_for(waiting, WAIT)
    assert server.actions("echo") == []


async def test_a_refused_subscribe_does_not_disturb_requests(
    server: FakeServer, make_client: MakeClient
) -> None:
    async def script(conn: FakeConnection) -> None:
        frame = await conn.recv_action("subscribe")
        await conn.send(error(frame["id"], "RATE_LIMITED", "slow down"))
        echo = await conn.recv_action("echo")
        await conn.send(response(echo["id"], "fine"))

    server.script = script
    async with make_client() as client:
        # Outside a restore, a refused subscribe is the caller's to see.
        with pytest.raises(RateLimitedError):
            async with client.subscribe("news"):
                pass
        assert await asyncio.wait_for(client.request("echo"), WAIT) == "fine"
