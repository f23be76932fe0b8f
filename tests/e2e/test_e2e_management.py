"""The Management API as boto3's own client sees it, served on the gateway's port."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from e2e_support import (
    connection_ids,
    eventually,
    management_client,
    open_ws,
)
from streamer_infra.local import LocalStack
from streamer_infra.local._management import api_timestamp
from websockets.exceptions import ConnectionClosed

API_GATEWAY_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
"""`2020-04-30T20:10:33.236Z`: how API Gateway writes `connectedAt` and `lastActiveAt`."""


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


async def test_get_writes_times_with_three_fractional_digits(local_stack: LocalStack) -> None:
    ws, connection_id = await _connected(local_stack, "m-get-times")
    client = management_client(local_stack)
    bodies: list[bytes] = []

    def keep_body(response_dict: dict[str, Any], **_: Any) -> None:
        bodies.append(response_dict["body"])

    # What boto3 received before parsing it into datetimes (what the AWS CLI prints).
    client.meta.events.register("before-parse.apigatewaymanagementapi.GetConnection", keep_body)
    async with ws:
        info = await asyncio.to_thread(client.get_connection, ConnectionId=connection_id)
    (body,) = bodies
    raw = json.loads(body)
    for field, parsed_key in (("connectedAt", "ConnectedAt"), ("lastActiveAt", "LastActiveAt")):
        assert API_GATEWAY_TIME.fullmatch(raw[field]), raw[field]
        parsed = info[parsed_key]
        assert parsed.utcoffset() == timedelta(0)
        assert parsed.microsecond == int(raw[field][20:23]) * 1000


def test_times_keep_three_digits_when_the_milliseconds_are_zero() -> None:
    whole_second = int(datetime(2020, 4, 30, 20, 10, 33, tzinfo=UTC).timestamp()) * 1000
    assert api_timestamp(whole_second) == "2020-04-30T20:10:33.000Z"
    assert api_timestamp(whole_second + 236) == "2020-04-30T20:10:33.236Z"
    assert api_timestamp(whole_second + 7) == "2020-04-30T20:10:33.007Z"
    assert api_timestamp(0) == "1970-01-01T00:00:00.000Z"


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
