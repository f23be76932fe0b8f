"""The connection lifetime limit (2 hours on AWS), shortened."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_support import connection_ids, eventually, open_ws, receive, send, stack_config
from streamer_infra.local import BackgroundStack, DevKeys, GatewayLimits, LocalStack
from websockets.exceptions import ConnectionClosed


@pytest.fixture(scope="module")
def short_lived_stack(
    e2e_keys: DevKeys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    limits = GatewayLimits(idle_timeout=60, max_lifetime=1.0)
    config = stack_config(e2e_keys, tmp_path_factory.mktemp("lifetime"), limits=limits)
    with BackgroundStack(config) as stack:
        yield stack


async def test_connection_ends_at_its_lifetime_even_while_busy(
    short_lived_stack: LocalStack,
) -> None:
    ws = await open_ws(short_lived_stack, short_lived_stack.token("old", "acme"))

    async def keep_busy() -> None:
        while True:
            await send(ws, "ping")
            await receive(ws)

    with pytest.raises(ConnectionClosed) as closed:
        await keep_busy()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1001
    await eventually(
        lambda: connection_ids(short_lived_stack, "acme", "old") == [], "$disconnect ran"
    )
    reasons = short_lived_stack.gateway.counters.disconnect_reasons
    assert reasons["Connection lifetime exceeded"] == 1
