"""Fixtures of the client's tests: a scripted server per test and a client factory aimed at it."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from client_fakes import FAST, FakeServer
from streamer_client import StreamerClient


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    fake = FakeServer()
    async with fake.running():
        yield fake
    assert not fake.errors, f"server script failed: {fake.errors!r}"


@pytest.fixture
def make_client(server: FakeServer) -> Callable[..., StreamerClient]:
    def factory(**options: Any) -> StreamerClient:
        settings: dict[str, Any] = {**FAST, "token": "tok-1"}
        settings.update(options)
        return StreamerClient(server.url, **settings)

    return factory
