"""Topics across connections and tenants: an event never crosses a tenant boundary."""

from __future__ import annotations

import asyncio

from e2e_support import open_ws, receive, receive_for, send
from streamer_handlers import publish
from streamer_infra.local import LocalStack


async def test_server_side_publish_reaches_subscribers_of_its_tenant_only(
    local_stack: LocalStack,
) -> None:
    first = await open_ws(local_stack, local_stack.token("ann", "acme"))
    second = await open_ws(local_stack, local_stack.token("ben", "acme"))
    other = await open_ws(local_stack, local_stack.token("oz", "globex"))
    try:
        for name, ws in (("first", first), ("second", second), ("other", other)):
            await send(ws, "subscribe", {"topic": "news"}, id=f"sub-{name}")
            assert (await receive_for(ws, f"sub-{name}"))["type"] == "subscribed"

        report = await asyncio.to_thread(publish, "acme", "news", {"headline": "acme only"})
        assert len(report.delivered) == 2
        for ws in (first, second):
            event = await receive(ws)
            assert (event["type"], event["topic"], event["data"]) == (
                "event",
                "news",
                {"headline": "acme only"},
            )

        # Deliveries to one socket keep their order: had the acme event reached globex,
        # it would arrive before this marker.
        await asyncio.to_thread(publish, "globex", "news", {"headline": "globex marker"})
        event = await receive(other)
        assert event["data"] == {"headline": "globex marker"}
    finally:
        for ws in (first, second, other):
            await ws.close()


async def test_unsubscribed_connection_stops_receiving(local_stack: LocalStack) -> None:
    async with await open_ws(local_stack, local_stack.token("uma", "acme")) as ws:
        for topic in ("alerts", "marker"):
            await send(ws, "subscribe", {"topic": topic}, id=f"sub-{topic}")
            await receive_for(ws, f"sub-{topic}")
        await send(ws, "unsubscribe", {"topic": "alerts"}, id="unsub-a")
        assert (await receive_for(ws, "unsub-a"))["type"] == "unsubscribed"

        await asyncio.to_thread(publish, "acme", "alerts", "dropped")
        await asyncio.to_thread(publish, "acme", "marker", "kept")
        event = await receive(ws)
    assert (event["topic"], event["data"]) == ("marker", "kept")


async def test_job_progress_reaches_only_the_submitting_tenant(local_stack: LocalStack) -> None:
    async with (
        await open_ws(local_stack, local_stack.token("jo", "acme")) as owner,
        await open_ws(local_stack, local_stack.token("jo", "globex")) as stranger,
    ):
        await send(owner, "generate_report", {"steps": 2}, id="tenant-job")
        while (await receive_for(owner, "tenant-job"))["type"] != "complete":
            pass
        await send(stranger, "status", {"request_id": "tenant-job"}, id="peek")
        peek = await receive_for(stranger, "peek")
    assert peek["type"] == "error"
    assert peek["code"] == "NOT_FOUND"
