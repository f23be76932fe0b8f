"""Frames the server should never send are skipped with a warning; the client carries on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
from client_fakes import WAIT, FakeConnection, FakeServer, response
from streamer_client import StreamerClient

MakeClient = Callable[..., StreamerClient]

BAD_FRAMES: list[str | bytes] = [
    "not json at all",
    "[1, 2, 3]",
    '{"type": "mystery", "request_id": "x"}',
    '{"request_id": "x"}',
    '{"type": "progress", "request_id": "x", "percentage": 250, "seq": 1}',
    '{"type": "progress", "request_id": "x", "percentage": NaN, "seq": 1}',
    '{"type": "response", "request_id": "x", "result": null, "extra": 1}',
    '{"type": "error", "request_id": "x", "code": "NO_SUCH_CODE", "message": "?"}',
    "[" * 100 + "]" * 100,
    b"\xff\xfe\x00binary",
    "x" * (129 * 1024),
]


async def test_bad_frames_are_ignored_with_a_warning(
    server: FakeServer, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    async def script(conn: FakeConnection) -> None:
        frame = await conn.recv()
        for bad in BAD_FRAMES:
            await conn.send(bad)
        await conn.send(response(frame["id"], "survived"))

    server.script = script
    with caplog.at_level(logging.WARNING, logger="streamer_client"):
        async with make_client() as client:
            assert await asyncio.wait_for(client.request("echo"), WAIT) == "survived"
            assert len(server.connections) == 1
    warnings = [r for r in caplog.records if "malformed frame" in r.getMessage()]
    assert len(warnings) == len(BAD_FRAMES)
    assert all(r.levelno == logging.WARNING for r in warnings)
