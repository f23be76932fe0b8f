"""`$connect` through the authorizer: refused upgrades never open a socket."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import connection_store, eventually, open_ws, receive_for, send, stack_config
from streamer_core.auth import TokenIssuer, generate_key_pair
from streamer_infra.local import DEV_ISSUER, BackgroundStack, DevKeys, LocalStack
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus


@pytest.fixture(scope="module")
def tenant_stack(
    e2e_keys: DevKeys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    config = stack_config(
        e2e_keys, tmp_path_factory.mktemp("connect"), allowed_tenants=("acme", "globex")
    )
    with BackgroundStack(config) as stack:
        yield stack


async def _refused_status(stack: LocalStack, token: str | None) -> int:
    with pytest.raises(InvalidStatus) as refused:
        await open_ws(stack, token)
    return refused.value.response.status_code


async def test_no_token_is_401(tenant_stack: LocalStack) -> None:
    assert await _refused_status(tenant_stack, None) == 401


async def test_forged_token_is_401(tenant_stack: LocalStack) -> None:
    other_private, _ = generate_key_pair()
    forged = TokenIssuer(other_private, issuer=DEV_ISSUER).issue("mallory", "acme")
    assert await _refused_status(tenant_stack, forged) == 401


async def test_expired_token_is_401(tenant_stack: LocalStack) -> None:
    expired = tenant_stack.token("alice", "acme", ttl=-3600)
    assert await _refused_status(tenant_stack, expired) == 401


async def test_garbage_token_is_401(tenant_stack: LocalStack) -> None:
    assert await _refused_status(tenant_stack, "not-a-jwt") == 401


async def test_tenant_not_allowed_is_403(tenant_stack: LocalStack) -> None:
    assert await _refused_status(tenant_stack, tenant_stack.token("eve", "initech")) == 403


async def test_refusals_store_no_connection(tenant_stack: LocalStack) -> None:
    await _refused_status(tenant_stack, tenant_stack.token("eve2", "initech"))
    assert connection_store(tenant_stack).list_by_tenant("initech").items == []


async def test_accepted_connection_is_stored_with_its_principal(tenant_stack: LocalStack) -> None:
    token = tenant_stack.token("alice", "globex", ["reports:write"])
    async with await open_ws(tenant_stack, token) as ws:
        await send(ws, "ping", id="ping-1")
        pong = await receive_for(ws, "ping-1")
        stored = connection_store(tenant_stack).list_by_user("globex", "alice").items
    assert pong["type"] == "pong"
    assert len(stored) == 1
    assert stored[0].permissions == frozenset({"reports:write"})
    assert stored[0].stage == "local"


@pytest.mark.parametrize("where", ["query", "subprotocol"])
async def test_token_in_query_or_subprotocol(tenant_stack: LocalStack, where: str) -> None:
    token = tenant_stack.token(f"browser-{where}", "acme")
    if where == "query":
        ws = await connect(f"{tenant_stack.ws_url}?token={token}")
    else:
        ws = await connect(tenant_stack.ws_url, subprotocols=["streamer.v1", token])  # type: ignore[list-item]
    async with ws:
        if where == "subprotocol":
            assert ws.subprotocol == "streamer.v1"
        await send(ws, "echo", {"via": where}, id="via-1")
        assert (await receive_for(ws, "via-1"))["result"] == {"via": where}


async def test_disconnect_removes_the_stored_connection(tenant_stack: LocalStack) -> None:
    store = connection_store(tenant_stack)
    async with await open_ws(tenant_stack, tenant_stack.token("leaver", "acme")):
        assert len(store.list_by_user("acme", "leaver").items) == 1
    await eventually(
        lambda: store.list_by_user("acme", "leaver").items == [], "$disconnect deleted the row"
    )


def test_stage_other_than_the_api_s_is_403(tenant_stack: LocalStack, tmp_path: Path) -> None:
    import urllib.error
    import urllib.request

    url = tenant_stack.management_url.replace("/local", "/prod")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    assert refused.value.code == 403
