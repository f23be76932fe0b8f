"""Requests through the whole stack: gateway, router, SQS, processor, management API."""

from __future__ import annotations

import asyncio
import json

from e2e_support import (
    connection_store,
    eventually,
    open_ws,
    receive,
    receive_for,
    send,
    until_terminal,
)
from streamer_infra.local import LocalStack


async def test_echo_answers_with_the_payload(local_stack: LocalStack) -> None:
    async with await open_ws(local_stack, local_stack.token("alice", "acme")) as ws:
        await send(ws, "echo", {"text": "hello", "n": [1, 2]}, id="echo-1")
        frame = await receive_for(ws, "echo-1")
    assert frame == {
        "type": "response",
        "request_id": "echo-1",
        "result": {"text": "hello", "n": [1, 2]},
    }


async def test_async_job_streams_ordered_progress_then_completes(local_stack: LocalStack) -> None:
    async with await open_ws(local_stack, local_stack.token("bob", "acme")) as ws:
        await send(ws, "generate_report", {"steps": 4, "title": "q3"}, id="job-1")
        frames = await until_terminal(ws, "job-1")
        await send(ws, "status", {"request_id": "job-1"}, id="status-1")
        status = await receive_for(ws, "status-1")

    kinds = [frame["type"] for frame in frames]
    assert kinds[0] in ("acknowledgment", "progress")
    assert "acknowledgment" in kinds
    assert kinds[-1] == "complete"
    progress = [frame for frame in frames if frame["type"] == "progress"]
    seqs = [frame["seq"] for frame in progress]
    percentages = [frame["percentage"] for frame in progress]
    assert seqs == sorted(set(seqs))
    assert percentages == sorted(percentages)
    assert percentages[-1] == 100
    assert frames[-1]["result"] == {"title": "q3", "steps": 4, "rows": 40, "requested_by": "bob"}
    assert status["snapshot"]["status"] == "COMPLETED"


async def test_a_raising_action_is_an_error_frame_and_the_connection_keeps_working(
    local_stack: LocalStack,
) -> None:
    async with await open_ws(local_stack, local_stack.token("carol", "acme")) as ws:
        await send(ws, "explode", id="boom-1")
        error = await receive_for(ws, "boom-1")
        await send(ws, "echo", {"still": "alive"}, id="after-1")
        after = await receive_for(ws, "after-1")

    assert error["type"] == "error"
    assert error["code"] == "INTERNAL_ERROR"
    assert "always fails" not in error["message"]  # internals never reach the client
    assert after["result"] == {"still": "alive"}


async def test_bad_frames_get_validation_errors(local_stack: LocalStack) -> None:
    async with await open_ws(local_stack, local_stack.token("dave", "acme")) as ws:
        await ws.send("this is not json")
        not_json = await receive(ws)
        await send(ws, "no_such_action", id="unknown-1")
        unknown = await receive_for(ws, "unknown-1")
        await send(ws, "audit", id="audit-1")
        forbidden = await receive_for(ws, "audit-1")

    assert not_json["type"] == "error"
    assert not_json["code"] == "VALIDATION_ERROR"
    assert unknown["type"] == "error"
    assert unknown["code"] == "NOT_FOUND"
    assert forbidden["code"] == "FORBIDDEN"


async def test_permissions_from_the_token_reach_the_action(local_stack: LocalStack) -> None:
    token = local_stack.token("erin", "globex", ["audit:read"])
    async with await open_ws(local_stack, token) as ws:
        await send(ws, "audit", id="audit-2")
        frame = await receive_for(ws, "audit-2")
    assert frame["result"] == {"tenant": "globex", "user": "erin"}


async def test_two_hundred_clients_at_once_all_get_their_own_reply(
    local_stack: LocalStack,
) -> None:
    token = local_stack.token("crowd", "acme")

    async def one(index: int) -> dict[str, object]:
        async with await open_ws(local_stack, token) as ws:
            await send(ws, "echo", {"index": index}, id=f"crowd-{index}")
            return await receive_for(ws, f"crowd-{index}")

    replies = await asyncio.gather(*(one(index) for index in range(200)))
    assert [reply["result"] for reply in replies] == [{"index": i} for i in range(200)]


async def test_one_connection_many_requests_in_flight(local_stack: LocalStack) -> None:
    async with await open_ws(local_stack, local_stack.token("frank", "acme")) as ws:
        for index in range(50):
            await ws.send(
                json.dumps({"action": "echo", "id": f"many-{index}", "payload": {"i": index}})
            )
        replies = [await receive(ws) for _ in range(50)]
    assert sorted(reply["result"]["i"] for reply in replies) == list(range(50))


async def test_a_burst_of_connects_and_disconnects_runs_every_disconnect(
    local_stack: LocalStack,
) -> None:
    """200 sockets at once, half closed politely, half dropped: no row is left behind."""
    token = local_stack.token("burst", "burst-tenant")
    sockets = await asyncio.gather(*(open_ws(local_stack, token) for _ in range(200)))
    store = connection_store(local_stack)

    def stored() -> int:
        total, next_token = 0, None
        while True:
            page = store.list_by_tenant("burst-tenant", limit=100, next_token=next_token)
            total += len(page.items)
            next_token = page.next_token
            if next_token is None:
                return total

    assert stored() == 200
    polite, dropped = sockets[:100], sockets[100:]
    for ws in dropped:
        ws.transport.abort()
    await asyncio.gather(*(ws.close() for ws in polite))
    await eventually(lambda: stored() == 0, "every $disconnect deleted its row")


async def test_a_crashing_queued_action_is_retried_then_fails_with_an_error_frame(
    local_stack: LocalStack,
) -> None:
    async with await open_ws(local_stack, local_stack.token("gina", "acme")) as ws:
        await send(ws, "explode_later", id="boom-later")
        frames = await until_terminal(ws, "boom-later")
        await send(ws, "status", {"request_id": "boom-later"}, id="boom-status")
        status = await receive_for(ws, "boom-status")
    assert frames[-1]["type"] == "error"
    assert frames[-1]["code"] == "INTERNAL_ERROR"
    assert status["snapshot"]["status"] == "FAILED"
