"""Gateway fidelity with small functions of our own deployed through the same wiring.

These pin down what API Gateway and Lambda do around the handlers (event shapes, the
authorizer's policy rules, failing integrations, route selection, the SQS event source
mapping's retries and redrive) independently of what the real handlers choose to do.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from e2e_support import eventually, receive, stack_config
from streamer_infra.local import BackgroundStack, DevKeys, LocalStack
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

_lock = threading.Lock()
SEEN: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
PROCESSED: list[str] = []


def _record(function: str, event: dict[str, Any], context: Any) -> None:
    facts = {
        "function_name": context.function_name,
        "aws_request_id": context.aws_request_id,
        "remaining": context.get_remaining_time_in_millis(),
        "memory": context.memory_limit_in_mb,
    }
    with _lock:
        SEEN.append((function, event, facts))


def connect_function(event: dict[str, Any], context: Any) -> Any:
    query = event.get("queryStringParameters") or {}
    mode = query.get("mode", "allow")
    if event.get("type") == "REQUEST":
        _record("authorizer", event, context)
        if mode == "unauthorized":
            raise Exception("Unauthorized")
        if mode == "crash":
            raise RuntimeError("authorizer bug")
        if mode == "nested-context":
            return _policy(event, "Allow", {"nested": {"not": "allowed"}})
        return _policy(event, "Deny" if mode == "deny" else "Allow", {"userId": "u1", "n": 7})
    _record("connect", event, context)
    if mode == "refuse":
        return {"statusCode": 429}
    return {"statusCode": 200}


def _policy(event: dict[str, Any], effect: str, context: dict[str, Any]) -> dict[str, Any]:
    arn = event["methodArn"].rsplit("/", 2)[0] + "/*"
    return {
        "principalId": "u1",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": arn}],
        },
        "context": context,
    }


def disconnect_function(event: dict[str, Any], context: Any) -> None:
    _record("disconnect", event, context)


def router_function(event: dict[str, Any], context: Any) -> Any:
    _record("router", event, context)
    route = event["requestContext"]["routeKey"]
    if route == "crash":
        raise RuntimeError("integration bug")
    if route == "unserialisable":
        return {"statusCode": 200, "body": {1, 2}}
    return {"statusCode": 200, "body": json.dumps({"route": route, "body": event["body"]})}


def processor_function(event: dict[str, Any], context: Any) -> Any:
    failures = []
    for record in event["Records"]:
        kind, _, name = record["body"].partition(":")
        first = record["attributes"]["ApproximateReceiveCount"] == "1"
        if kind == "poison" or (kind == "fail-once" and first):
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        with _lock:
            PROCESSED.append(name)
    return {"batchItemFailures": failures}


@dataclass(frozen=True)
class Spec:
    name: str
    handler: Any
    route_keys: tuple[str, ...] = ()
    timeout: int = 10
    memory: int = 512
    trigger: str = "websocket"
    route_response: bool = False


FUNCTIONS = (
    Spec("connect", connect_function, ("$connect",), trigger="authorizer+websocket"),
    Spec("disconnect", disconnect_function, ("$disconnect",)),
    Spec(
        "router",
        router_function,
        ("$default", "echo", "crash", "unserialisable"),
        route_response=True,
    ),
    Spec("processor", processor_function, trigger="sqs"),
)


@pytest.fixture(scope="module")
def fake_stack(e2e_keys: DevKeys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    config = stack_config(
        e2e_keys,
        tmp_path_factory.mktemp("gateway"),
        functions=FUNCTIONS,
        visibility_timeout=1,
        max_receive_count=2,
    )
    with BackgroundStack(config) as stack:
        yield stack


def _events(function: str) -> list[dict[str, Any]]:
    with _lock:
        return [event for name, event, _ in SEEN if name == function]


def _of(function: str, connection_id: str) -> list[dict[str, Any]]:
    return [e for e in _events(function) if e["requestContext"]["connectionId"] == connection_id]


async def test_events_have_api_gateway_shapes(fake_stack: LocalStack) -> None:
    async with connect(f"{fake_stack.ws_url}?mode=allow&x=1", user_agent_header="probe/1") as ws:
        await ws.send(json.dumps({"action": "echo", "n": 1}))
        reply = json.loads(await receive_text(ws))
        connection_id = _events("connect")[-1]["requestContext"]["connectionId"]
    await eventually(lambda: bool(_of("disconnect", connection_id)), "$disconnect ran")

    (authorizer,) = _of("authorizer", connection_id)
    (connected,) = _of("connect", connection_id)
    (message,) = _of("router", connection_id)
    (disconnected,) = _of("disconnect", connection_id)
    assert authorizer["type"] == "REQUEST"
    assert authorizer["methodArn"].endswith("/local/$connect")
    assert authorizer["queryStringParameters"] == {"mode": "allow", "x": "1"}
    assert connected["requestContext"]["eventType"] == "CONNECT"
    assert connected["requestContext"]["authorizer"]["principalId"] == "u1"
    assert connected["requestContext"]["authorizer"]["n"] == 7
    assert connected["headers"]["User-Agent"] == "probe/1"
    assert connected["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert connected["multiValueHeaders"]["User-Agent"] == ["probe/1"]
    context = message["requestContext"]
    assert (context["routeKey"], context["eventType"], context["stage"]) == (
        "echo",
        "MESSAGE",
        "local",
    )
    for key in ("messageId", "requestId", "apiId", "domainName", "connectedAt", "requestTimeEpoch"):
        assert context[key]
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert context["authorizer"]["userId"] == "u1"
    assert message["isBase64Encoded"] is False
    assert reply == {"route": "echo", "body": json.dumps({"action": "echo", "n": 1})}
    assert disconnected["requestContext"]["eventType"] == "DISCONNECT"
    assert disconnected["requestContext"]["disconnectStatusCode"] == 1000


async def receive_text(ws: Any) -> str:
    message = await asyncio.wait_for(ws.recv(), 20)
    assert isinstance(message, str)
    return message


async def test_lambda_context_is_lambda_like(fake_stack: LocalStack) -> None:
    async with connect(fake_stack.ws_url) as ws:
        await ws.send("{}")
        await receive(ws)
    with _lock:
        facts = [f for name, _, f in SEEN if name == "router"][-1]
    assert facts["function_name"] == "streamer-local-router"
    assert facts["memory"] == 512
    assert 0 < facts["remaining"] <= 10_000
    assert len(facts["aws_request_id"]) == 36


async def test_route_selection_falls_back_to_default(fake_stack: LocalStack) -> None:
    async with connect(fake_stack.ws_url) as ws:
        for body in ("not json", json.dumps({"action": "nope"}), json.dumps({"action": 5})):
            await ws.send(body)
            assert json.loads(await receive_text(ws))["route"] == "$default"
        await ws.send(b"\x00\x01")
        assert json.loads(await receive_text(ws))["route"] == "$default"
    binary = [e for e in _events("router") if e["isBase64Encoded"]]
    assert binary[-1]["body"] == "AAE="


@pytest.mark.parametrize(
    ("mode", "status"),
    [
        ("unauthorized", 401),
        ("deny", 403),
        ("crash", 500),
        ("nested-context", 500),
        ("refuse", 429),
    ],
)
async def test_refused_connect_answers_the_upgrade_with_its_status(
    fake_stack: LocalStack, mode: str, status: int
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(f"{fake_stack.ws_url}?mode={mode}")
    assert refused.value.response.status_code == status


async def test_a_crashing_integration_answers_like_api_gateway(fake_stack: LocalStack) -> None:
    async with connect(fake_stack.ws_url) as ws:
        await ws.send(json.dumps({"action": "crash"}))
        crashed = json.loads(await receive_text(ws))
        await ws.send(json.dumps({"action": "unserialisable"}))
        unmarshalled = json.loads(await receive_text(ws))
        await ws.send(json.dumps({"action": "echo"}))
        after = json.loads(await receive_text(ws))
    assert crashed["message"] == "Internal server error"
    assert crashed["connectionId"]
    assert crashed["requestId"]
    assert unmarshalled["message"] == "Internal server error"
    assert after["route"] == "echo"


async def test_client_close_code_and_reason_reach_disconnect(fake_stack: LocalStack) -> None:
    ws = await connect(fake_stack.ws_url)
    await ws.send("{}")
    await receive(ws)
    connection_id = _events("router")[-1]["requestContext"]["connectionId"]
    await ws.close(code=4000, reason="bye")
    await eventually(lambda: bool(_of("disconnect", connection_id)), "$disconnect ran")
    context = _of("disconnect", connection_id)[0]["requestContext"]
    assert (context["disconnectStatusCode"], context["disconnectReason"]) == (4000, "bye")


async def test_dropped_connection_still_runs_disconnect(fake_stack: LocalStack) -> None:
    ws = await connect(fake_stack.ws_url)
    await ws.send("{}")
    await receive(ws)
    connection_id = _events("router")[-1]["requestContext"]["connectionId"]
    ws.transport.abort()
    await eventually(lambda: bool(_of("disconnect", connection_id)), "$disconnect ran")
    assert _of("disconnect", connection_id)[0]["requestContext"]["disconnectStatusCode"] == 1006


async def test_queue_retries_failed_records_and_redrives_poison_to_the_dlq(
    fake_stack: LocalStack,
) -> None:
    sqs = fake_stack.aws_client("sqs")
    queue = fake_stack.resources.queue_url
    for body in ("ok:a", "fail-once:b", "poison:c", "ok:d"):
        await asyncio.to_thread(sqs.send_message, QueueUrl=queue, MessageBody=body)

    await eventually(lambda: {"a", "b", "d"} <= set(PROCESSED), "good records processed")

    def dead_letters() -> list[str]:
        response = sqs.receive_message(
            QueueUrl=fake_stack.resources.dead_letter_queue_url, WaitTimeSeconds=1
        )
        return [m["Body"] for m in response.get("Messages", [])]

    found: list[str] = []
    for _ in range(20):
        found = await asyncio.to_thread(dead_letters)
        if found:
            break
    assert found == ["poison:c"]
    with _lock:
        assert sorted(PROCESSED).count("a") == 1
        assert "c" not in PROCESSED


async def test_no_websocket_extension_is_negotiated_as_on_api_gateway(
    fake_stack: LocalStack,
) -> None:
    # websockets offers permessage-deflate by default; API Gateway never accepts it.
    async with connect(fake_stack.ws_url) as ws:
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        await ws.send(json.dumps({"action": "echo"}))
        assert json.loads(await receive_text(ws))["route"] == "echo"
