"""The Management API as boto3's own client sees it, served on the gateway's port."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from datetime import datetime

import pytest
from e2e_support import (
    connection_ids,
    eventually,
    management_client,
    open_ws,
)
from streamer_infra.local import LocalStack
from websockets.exceptions import ConnectionClosed


async def _connected(stack: LocalStack, user: str):  # type: ignore[no-untyped-def]
    ws = await open_ws(stack, stack.token(user, "acme"))
    (connection_id,) = connection_ids(stack, "acme", user)
    return ws, connection_id


async def test_post_delivers_the_bytes_as_they_are(local_stack: LocalStack) -> None:
    ws, connection_id = await _connected(local_stack, "m-post")
    client = management_client(local_stack)
    async with ws:
        await asyncio.to_thread(
            client.post_to_connection, ConnectionId=connection_id, Data=b'{"hello": 1}'
        )
        assert await asyncio.wait_for(ws.recv(), 20) == '{"hello": 1}'


async def test_get_reports_the_connection(local_stack: LocalStack) -> None:
    ws, connection_id = await _connected(local_stack, "m-get")
    async with ws:
        info = await asyncio.to_thread(
            management_client(local_stack).get_connection, ConnectionId=connection_id
        )
    assert isinstance(info["ConnectedAt"], datetime)
    assert isinstance(info["LastActiveAt"], datetime)
    assert info["Identity"]["SourceIp"] == "127.0.0.1"
    assert info["Identity"]["UserAgent"].startswith("Python/")


async def test_gone_after_disconnect_raises_goneexception(local_stack: LocalStack) -> None:
    ws, connection_id = await _connected(local_stack, "m-gone")
    await ws.close()
    client = management_client(local_stack)
    with pytest.raises(client.exceptions.GoneException):
        await asyncio.to_thread(client.post_to_connection, ConnectionId=connection_id, Data=b"x")
    with pytest.raises(client.exceptions.GoneException):
        await asyncio.to_thread(client.get_connection, ConnectionId=connection_id)


async def test_unknown_connection_is_gone(local_stack: LocalStack) -> None:
    client = management_client(local_stack)
    with pytest.raises(client.exceptions.GoneException):
        await asyncio.to_thread(client.post_to_connection, ConnectionId="bm8tc3VjaA=", Data=b"x")


async def test_payload_over_128_kb_is_413_and_the_socket_stays_open(
    local_stack: LocalStack,
) -> None:
    ws, connection_id = await _connected(local_stack, "m-big")
    client = management_client(local_stack)
    async with ws:
        with pytest.raises(client.exceptions.PayloadTooLargeException):
            await asyncio.to_thread(
                client.post_to_connection, ConnectionId=connection_id, Data=b"x" * (128 * 1024 + 1)
            )
        await asyncio.to_thread(
            client.post_to_connection, ConnectionId=connection_id, Data=b"y" * (128 * 1024)
        )
        assert await asyncio.wait_for(ws.recv(), 20) == "y" * (128 * 1024)


async def test_delete_closes_the_socket_and_runs_disconnect(local_stack: LocalStack) -> None:
    ws, connection_id = await _connected(local_stack, "m-delete")
    client = management_client(local_stack)
    await asyncio.to_thread(client.delete_connection, ConnectionId=connection_id)
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 20)
    await eventually(
        lambda: connection_ids(local_stack, "acme", "m-delete") == [], "$disconnect ran"
    )
    with pytest.raises(client.exceptions.GoneException):
        await asyncio.to_thread(client.post_to_connection, ConnectionId=connection_id, Data=b"x")


def test_unsigned_requests_are_forbidden(local_stack: LocalStack) -> None:
    request = urllib.request.Request(
        f"{local_stack.management_url}/@connections/abc", data=b"x", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
    assert refused.value.headers["x-amzn-ErrorType"] == "ForbiddenException"
