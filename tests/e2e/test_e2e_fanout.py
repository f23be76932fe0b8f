"""Fan-out through the local stack's queue: shards, the queue entry point and the CLI.

The stack runs with shards of three above two subscribers, so a topic of ten is four
shards that the local event source mapping hands to the processor, which sends them
through the gateway: the same path a large fan-out takes on AWS.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import (
    FAST_HANDLER_ENV,
    REPLY_TIMEOUT,
    connection_ids,
    open_ws,
    receive,
    receive_for,
    send,
    stack_config,
)
from streamer_client import StreamerClient
from streamer_handlers import publish
from streamer_infra.cli import _stack_state
from streamer_infra.cli import main as streamer_main
from streamer_infra.local import BackgroundStack, DevKeys, LocalStack
from websockets.asyncio.client import ClientConnection

SHARD = 3
DIRECT = 2


@pytest.fixture(scope="module")
def fanout_stack(
    e2e_keys: DevKeys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    environment = {
        **FAST_HANDLER_ENV,
        "STREAMER_FANOUT_SHARD_SIZE": str(SHARD),
        "STREAMER_FANOUT_DIRECT_MAX": str(DIRECT),
        "STREAMER_FANOUT_SENDS_PER_SECOND": "100000",
    }
    config = stack_config(e2e_keys, tmp_path_factory.mktemp("fanout"), environment=environment)
    with BackgroundStack(config) as stack:
        yield stack


async def _subscribers(
    stack: LocalStack, tenant: str, topic: str, n: int, user: str
) -> list[ClientConnection]:
    sockets = [await open_ws(stack, stack.token(f"{user}{i}", tenant)) for i in range(n)]
    for index, ws in enumerate(sockets):
        await send(ws, "subscribe", {"topic": topic}, id=f"sub-{index}")
        assert (await receive_for(ws, f"sub-{index}"))["type"] == "subscribed"
    return sockets


async def _close(*groups: list[ClientConnection]) -> None:
    for group in groups:
        for ws in group:
            await ws.close()


async def _next_event(ws: ClientConnection) -> dict[str, Any]:
    while True:
        frame = await receive(ws)
        if frame["type"] == "event":
            return frame


async def _nothing_before_marker(
    stack: LocalStack, sockets: list[ClientConnection], tenant: str, topic: str
) -> None:
    """Deliveries to one socket keep their order: a stray event would arrive first."""
    await asyncio.to_thread(publish, tenant, topic, "marker")
    for ws in sockets:
        assert (await _next_event(ws))["data"] == "marker"


async def test_a_sharded_python_publish_reaches_every_subscriber_once_and_no_other_tenant(
    fanout_stack: LocalStack,
) -> None:
    acme = await _subscribers(fanout_stack, "acme", "wide", 10, "ann")
    globex = await _subscribers(fanout_stack, "globex", "wide", 2, "oz")
    try:
        report = await asyncio.to_thread(publish, "acme", "wide", {"n": 1}, event_id="evt-e2e")
        assert (report.queued, report.shards) == (10, 4)
        assert report.delivered == ()
        for ws in acme:
            event = await _next_event(ws)
            assert (event["topic"], event["data"], event["id"]) == ("wide", {"n": 1}, "evt-e2e")
        await _nothing_before_marker(fanout_stack, acme, "acme", "wide")
        await _nothing_before_marker(fanout_stack, globex, "globex", "wide")
    finally:
        await _close(acme, globex)


async def test_a_publish_message_on_the_queue_is_sharded_by_the_processor(
    fanout_stack: LocalStack,
) -> None:
    acme = await _subscribers(fanout_stack, "acme", "queued", 7, "bea")
    globex = await _subscribers(fanout_stack, "globex", "queued", 2, "gil")
    sqs = fanout_stack.aws_client("sqs")
    body = {"kind": "publish", "tenant": "acme", "topic": "queued", "data": "from a shell"}
    try:
        await asyncio.to_thread(
            sqs.send_message,
            QueueUrl=fanout_stack.resources.queue_url,
            MessageBody=json.dumps(body),
        )
        ids = {(await _next_event(ws))["id"] for ws in acme}
        assert len(ids) == 1
        assert next(iter(ids)).startswith("sqs-")
        await _nothing_before_marker(fanout_stack, acme, "acme", "queued")
        await _nothing_before_marker(fanout_stack, globex, "globex", "queued")
    finally:
        await _close(acme, globex)


async def test_a_shard_delivered_twice_reaches_the_sdks_subscriber_once(
    fanout_stack: LocalStack,
) -> None:
    """SQS may deliver a shard twice: the socket gets the event twice, the SDK yields it once."""
    raw = await _subscribers(fanout_stack, "acme", "twice", 1, "raw")
    token = fanout_stack.token("sdk-twice", "acme")
    fast = {"open_timeout": REPLY_TIMEOUT}
    async with (
        StreamerClient(fanout_stack.ws_url, token=token, **fast) as client,
        client.subscribe("twice") as events,
    ):
        listed = [
            *connection_ids(fanout_stack, "acme", "raw0"),
            *connection_ids(fanout_stack, "acme", "sdk-twice"),
        ]
        shard = {
            "kind": "fanout",
            "tenant": "acme",
            "topic": "twice",
            "id": "evt-twice",
            "published_at": 1,
            "data": "once",
            "connections": listed,
            "attempt": 1,
        }
        sqs = fanout_stack.aws_client("sqs")
        for _ in range(2):
            await asyncio.to_thread(
                sqs.send_message,
                QueueUrl=fanout_stack.resources.queue_url,
                MessageBody=json.dumps(shard),
            )
        # The raw socket sees both copies, so both have reached the SDK's socket too.
        for _ in range(2):
            assert (await _next_event(raw[0]))["id"] == "evt-twice"
        await asyncio.to_thread(publish, "acme", "twice", "after")
        first = await asyncio.wait_for(anext(events), REPLY_TIMEOUT)
        second = await asyncio.wait_for(anext(events), REPLY_TIMEOUT)
    await _close(raw)
    assert [first.data, second.data] == ["once", "after"]


def test_streamer_publish_reaches_the_running_stack_through_its_state_file(
    fanout_stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario() -> None:
        sockets = await _subscribers(fanout_stack, "acme", "cli", 4, "cy")
        try:
            async with _stack_state(fanout_stack):
                state = json.loads((fanout_stack.config.state_dir / "stack.json").read_text())
                assert state["queue_url"] == fanout_stack.resources.queue_url
                code = await asyncio.to_thread(
                    streamer_main,
                    [
                        "publish",
                        "--state-dir",
                        str(fanout_stack.config.state_dir),
                        "--tenant",
                        "acme",
                        "--topic",
                        "cli",
                        "--id",
                        "evt-cli",
                        '{"from": "the terminal"}',
                    ],
                )
                assert code == 0
            assert not (fanout_stack.config.state_dir / "stack.json").exists()
            for ws in sockets:
                event = await _next_event(ws)
                assert (event["id"], event["data"]) == ("evt-cli", {"from": "the terminal"})
        finally:
            await _close(sockets)

    asyncio.run(scenario())
    assert "queued event evt-cli" in capsys.readouterr().out


def test_streamer_publish_takes_a_queue_url_and_an_endpoint(
    fanout_stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario() -> None:
        sockets = await _subscribers(fanout_stack, "globex", "cli-url", 3, "dee")
        try:
            code = await asyncio.to_thread(
                streamer_main,
                [
                    "publish",
                    "--queue-url",
                    fanout_stack.resources.queue_url,
                    "--endpoint-url",
                    fanout_stack.aws_endpoint_url,
                    "--region",
                    fanout_stack.config.region,
                    "--tenant",
                    "globex",
                    "--topic",
                    "cli-url",
                    "42",
                ],
            )
            assert code == 0
            for ws in sockets:
                assert (await _next_event(ws))["data"] == 42
        finally:
            await _close(sockets)

    asyncio.run(scenario())
    assert "queued event sqs-" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "a#b", "--topic", "t", "1"], "--tenant"),
        (["--tenant", "acme", "--topic", "bad topic", "1"], "--topic"),
        (["--tenant", "acme", "--topic", "t", "not json"], "DATA must be JSON"),
        (["--tenant", "acme", "--topic", "t", "--id", "a b", "1"], "--id"),
    ],
)
def test_streamer_publish_refuses_what_the_processor_would_drop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert streamer_main(["publish", "--state-dir", str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err


def test_streamer_publish_without_a_running_stack_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["publish", "--state-dir", str(tmp_path), "--tenant", "acme", "--topic", "t", "1"]
    assert streamer_main(args) == 2
    assert "no running `streamer dev`" in capsys.readouterr().err
    (tmp_path / "stack.json").write_text(json.dumps({"pid": 2**22 + 12345, "queue_url": "x"}))
    assert streamer_main(args) == 2
    assert "no longer running" in capsys.readouterr().err


def test_streamer_publish_to_a_deployed_stack_reads_its_work_queue_output(
    fanout_stack: LocalStack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--stack ENV` asks the Pulumi CLI for `workQueueUrl`; a stand-in CLI answers with
    the local stack's queue, reached through --endpoint-url as AWS would be."""
    fake = tmp_path / "pulumi"
    fake.write_text(
        "#!/bin/sh\n"
        'test "$*" = "stack output workQueueUrl --stack staging" || exit 3\n'
        f"echo {fanout_stack.resources.queue_url}\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")

    async def scenario() -> None:
        sockets = await _subscribers(fanout_stack, "acme", "deployed", 1, "dep")
        try:
            args = ["publish", "--stack", "staging", "--tenant", "acme", "--topic", "deployed"]
            args += ["--endpoint-url", fanout_stack.aws_endpoint_url, '"hi"']
            assert await asyncio.to_thread(streamer_main, args) == 0
            assert (await _next_event(sockets[0]))["data"] == "hi"
        finally:
            await _close(sockets)

    asyncio.run(scenario())
    assert "queued event" in capsys.readouterr().out
    fake.write_text("#!/bin/sh\necho 'error: no stack named staging' >&2\nexit 255\n")
    args = ["publish", "--stack", "staging", "--tenant", "acme", "--topic", "t", "1"]
    assert streamer_main(args) == 2
    assert "no stack named staging" in capsys.readouterr().err
