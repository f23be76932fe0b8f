"""The upgrade request's head against API Gateway's header limit, as the `websockets` client
sees it: a refusal it can parse, that quotes nothing of the request."""

from __future__ import annotations

import pytest
from e2e_support import REPLY_TIMEOUT
from streamer_infra.local import GatewayLimits, LocalStack
from streamer_infra.local._limits import API_GATEWAY_MAX_HEADER_BYTES
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

PAD = "X-Padding"


async def _open(stack: LocalStack, headers: dict[str, str]) -> ClientConnection:
    return await connect(stack.ws_url, additional_headers=headers, open_timeout=REPLY_TIMEOUT)


def _head_size(ws: ClientConnection) -> int:
    """What the client sent, counted as the gateway counts: request line and header lines."""
    request = ws.request
    assert request is not None
    size = len(f"GET {request.path} HTTP/1.1\r\n".encode())
    for name, value in request.headers.raw_items():
        size += len(f"{name}: {value}\r\n".encode())
    return size


async def _refusal(stack: LocalStack, token: str | None, **headers: str) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as refused:
        await _open(stack, _with_token(token, headers))
    return refused.value


def _with_token(token: str | None, headers: dict[str, str]) -> dict[str, str]:
    merged = dict(headers)
    if token is not None:
        merged["Authorization"] = f"Bearer {token}"
    return merged


async def _padding_to_fill(stack: LocalStack, token: str) -> int:
    """The X-Padding length that makes this client's upgrade exactly the limit."""
    ws = await _open(stack, _with_token(token, {PAD: "p"}))
    async with ws:
        size = _head_size(ws)
    assert size < API_GATEWAY_MAX_HEADER_BYTES
    return 1 + API_GATEWAY_MAX_HEADER_BYTES - size


def test_the_default_is_api_gateways_figure() -> None:
    assert GatewayLimits().max_header_bytes == API_GATEWAY_MAX_HEADER_BYTES == 10240


async def test_an_oversized_authorization_header_is_431_and_quotes_nothing(
    local_stack: LocalStack,
) -> None:
    secret = "S3cr3tT0k3n" * 1024  # 11 KiB
    refused = await _refusal(local_stack, secret)
    assert refused.response.status_code == 431
    body = refused.response.body or b""
    assert b"S3cr3t" not in body
    assert b"Bearer" not in body
    assert b"Request Header Fields Too Large" in body


async def test_a_9_kb_token_is_judged_by_the_authorizer(local_stack: LocalStack) -> None:
    """Under API Gateway's limit, so the request reaches the authorizer, which refuses junk."""
    junk = "J" * 9 * 1024
    refused = await _refusal(local_stack, junk)
    assert refused.response.status_code == 401
    assert b"JJJJ" not in (refused.response.body or b"")


async def test_many_small_headers_over_the_limit_are_431(local_stack: LocalStack) -> None:
    token = local_stack.token("h-many-over", "acme")
    headers = {f"X-Extra-{index}": "v" * 100 for index in range(100)}
    refused = await _refusal(local_stack, token, **headers)
    assert refused.response.status_code == 431


async def test_many_small_headers_under_the_limit_connect(local_stack: LocalStack) -> None:
    token = local_stack.token("h-many-under", "acme")
    headers = {f"X-Extra-{index}": "v" for index in range(300)}
    ws = await _open(local_stack, _with_token(token, headers))
    async with ws:
        assert _head_size(ws) < API_GATEWAY_MAX_HEADER_BYTES
        await ws.ping()


async def test_a_head_of_exactly_the_limit_connects(local_stack: LocalStack) -> None:
    token = local_stack.token("h-edge", "acme")
    padding = await _padding_to_fill(local_stack, token)
    ws = await _open(local_stack, _with_token(token, {PAD: "p" * padding}))
    async with ws:
        assert _head_size(ws) == API_GATEWAY_MAX_HEADER_BYTES
        await ws.ping()


async def test_one_byte_over_the_limit_is_431(local_stack: LocalStack) -> None:
    token = local_stack.token("h-edge-over", "acme")
    padding = await _padding_to_fill(local_stack, token)
    refused = await _refusal(local_stack, token, **{PAD: "p" * (padding + 1)})
    assert refused.response.status_code == 431
