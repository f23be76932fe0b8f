"""Helpers the end-to-end tests share: a raw protocol client and waiting without sleeping."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from streamer_core.storage import ConnectionStore
from streamer_infra.local import DevKeys, GatewayLimits, LocalStack, LocalStackConfig
from websockets.asyncio.client import ClientConnection, connect

E2E_APP = "streamer_e2e_app:app"

FAST_HANDLER_ENV = {
    "STREAMER_DEMO_DELAY": "0.01",
    "STREAMER_PROGRESS_PER_SECOND": "1000",
    "STREAMER_RATE_LIMIT": "100000",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}

REPLY_TIMEOUT = 20.0
"""Only bounds how long a broken test hangs; nothing asserts on durations."""


def stack_config(keys: DevKeys, tmp: Path, **overrides: Any) -> LocalStackConfig:
    """A test stack: free port, the e2e app, fast demo steps, shortened limits."""
    settings: dict[str, Any] = {
        "port": 0,
        "app": E2E_APP,
        "keys": keys,
        "state_dir": tmp,
        "limits": GatewayLimits(idle_timeout=30, max_lifetime=120),
        "environment": FAST_HANDLER_ENV,
        # A crashed job is retried after the visibility timeout and fails for good on the
        # second receive: quick enough for tests, longer than any test job runs.
        "visibility_timeout": 2,
        "max_receive_count": 2,
    }
    settings.update(overrides)
    return LocalStackConfig(**settings)


async def open_ws(stack: LocalStack, token: str | None = None, **kwargs: Any) -> ClientConnection:
    """Connect with the token in the Authorization header (the SDK's default)."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return await connect(
        stack.ws_url, additional_headers=headers, open_timeout=REPLY_TIMEOUT, **kwargs
    )


async def send(ws: ClientConnection, action: str, payload: Any = None, **frame: Any) -> None:
    await ws.send(json.dumps({"action": action, "payload": payload or {}, **frame}))


async def receive(ws: ClientConnection) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.recv(), REPLY_TIMEOUT)
    decoded: dict[str, Any] = json.loads(message)
    return decoded


async def receive_for(ws: ClientConnection, request_id: str) -> dict[str, Any]:
    """The next frame answering `request_id` (events and other requests' frames skipped)."""
    while True:
        frame = await receive(ws)
        if frame.get("request_id") == request_id:
            return frame


async def until_terminal(ws: ClientConnection, request_id: str) -> list[dict[str, Any]]:
    """Every frame of one request, up to and including its complete or error frame."""
    frames: list[dict[str, Any]] = []
    while True:
        frame = await receive_for(ws, request_id)
        frames.append(frame)
        if frame["type"] in ("complete", "error"):
            return frames


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` until it holds; fail with `what` if it never does."""
    deadline = time.monotonic() + REPLY_TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.02)


def management_client(stack: LocalStack) -> Any:
    """boto3's own Management API client, pointed at the local gateway."""
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=stack.management_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def connection_store(stack: LocalStack) -> ConnectionStore:
    return ConnectionStore(stack.aws_client("dynamodb"), stack.resources.tables["connections"])


def connection_ids(stack: LocalStack, tenant: str, user: str) -> list[str]:
    """The connections `$connect` stored for one user (what the handlers see)."""
    page = connection_store(stack).list_by_user(tenant, user)
    return [item.connection_id for item in page.items]
