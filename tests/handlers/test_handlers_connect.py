"""$connect as REQUEST authorizer and as route, and $disconnect."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from streamer_handlers.functions import connect, disconnect


def _emf(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    return [line for line in lines if "_aws" in line]


def test_authorizer_allows_and_carries_the_principal(stack):
    token = stack.token("alice", "acme", ["reports:write", "reports:read"])
    policy = connect.handler(
        stack.events.authorizer(headers={"Authorization": f"Bearer {token}"}), stack.context()
    )
    assert policy["principalId"] == "alice"
    statement = policy["policyDocument"]["Statement"][0]
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "execute-api:Invoke"
    assert statement["Resource"][0].startswith("arn:aws:execute-api:us-east-1:123456789012:")
    assert policy["context"]["userId"] == "alice"
    assert policy["context"]["tenantId"] == "acme"
    assert policy["context"]["permissions"] == "reports:read reports:write"
    assert all(isinstance(v, str | int | bool) for v in policy["context"].values())


@pytest.mark.parametrize(
    "token",
    ["not-a-jwt", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", ""],
    ids=["garbage", "unsigned", "empty"],
)
def test_authorizer_answers_401_for_bad_or_missing_tokens(stack, capsys, token):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        connect.handler(stack.events.authorizer(headers=headers), stack.context())
    metrics = _emf(capsys)
    assert any(m.get("AuthFailures") == [1.0] for m in metrics)
    by_reason = [m for m in metrics if "reason" in m]
    assert len(by_reason) == 1


def test_authorizer_answers_401_for_an_expired_token(stack):
    token = stack.issuer.issue("alice", "acme", ttl=-3600)
    with pytest.raises(Exception, match="Unauthorized"):
        connect.handler(
            stack.events.authorizer(headers={"Authorization": f"Bearer {token}"}), stack.context()
        )


def test_authorizer_denies_a_tenant_not_allowed(stack, capsys):
    token = stack.token("mallory", "initech")
    policy = connect.handler(
        stack.events.authorizer(headers={"Authorization": f"Bearer {token}"}), stack.context()
    )
    assert policy["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert "context" not in policy
    reasons = [m["reason"] for m in _emf(capsys) if "reason" in m]
    assert reasons == ["tenant_not_allowed"]


def test_token_from_query_string_is_accepted(stack):
    token = stack.token()
    policy = connect.handler(stack.events.authorizer(query={"token": token}), stack.context())
    assert policy["policyDocument"]["Statement"][0]["Effect"] == "Allow"


def test_connect_route_stores_the_connection_from_the_authorizer_context(stack, capsys):
    connection_id = stack.connect("alice", "acme", ["a", "b"])
    stored = stack.runtime.storage.connections.get(connection_id)
    assert stored is not None
    assert (stored.user_id, stored.tenant_id, stored.permissions) == ("alice", "acme", {"a", "b"})
    assert stored.domain_name.endswith("amazonaws.com")
    assert stored.stage == "test"
    assert stored.expires_at > stack.clock() + 7200
    assert any(m.get("ConnectionsOpened") == [1.0] for m in _emf(capsys))


def test_connect_route_verifies_the_token_itself_without_an_authorizer(stack):
    token = stack.token("bob", "globex", ["x"])
    response = connect.handler(
        stack.events.connect("c-self=", headers={"Authorization": f"Bearer {token}"}),
        stack.context(),
    )
    assert response == {"statusCode": 200}
    stored = stack.runtime.storage.connections.get("c-self=")
    assert stored is not None
    assert stored.user_id == "bob"
    assert stored.tenant_id == "globex"


def test_connect_route_refuses_without_a_valid_token(stack):
    assert connect.handler(stack.events.connect("c-none="), stack.context()) == {"statusCode": 401}
    forged = stack.token()[:-4] + "AAAA"
    response = connect.handler(
        stack.events.connect("c-forged=", headers={"Authorization": f"Bearer {forged}"}),
        stack.context(),
    )
    assert response == {"statusCode": 401}
    other = stack.token("m", "initech")
    response = connect.handler(
        stack.events.connect("c-tenant=", query={"Authorization": f"Bearer {other}"}),
        stack.context(),
    )
    assert response == {"statusCode": 403}
    assert stack.runtime.storage.connections.get("c-none=") is None


def test_subprotocol_token_is_accepted_and_a_subprotocol_echoed(stack):
    token = stack.token()
    headers = {"Sec-WebSocket-Protocol": f"streamer, {token}"}
    policy = connect.handler(stack.events.authorizer(headers=headers), stack.context())
    assert policy["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    response = connect.handler(stack.events.connect("c-proto=", headers=headers), stack.context())
    assert response == {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": "streamer"}}


def test_disconnect_removes_connection_and_subscriptions_and_is_idempotent(stack):
    connection_id = stack.connect()
    assert (
        stack.send(connection_id, {"action": "subscribe", "payload": {"topic": "news"}})["type"]
        == "subscribed"
    )
    assert stack.disconnect(connection_id) == {"statusCode": 200}
    assert stack.runtime.storage.connections.get(connection_id) is None
    assert stack.runtime.storage.subscriptions.topics_of(connection_id) == []
    assert stack.disconnect(connection_id) == {"statusCode": 200}
    assert disconnect.handler({"requestContext": {}}, stack.context()) == {"statusCode": 200}


def test_disconnect_leaves_running_requests_alone(stack):
    connection_id = stack.connect()
    stack.send(connection_id, {"action": "job", "id": "keep"})
    stack.disconnect(connection_id)
    stack.sender.gone.add(connection_id)  # a closed socket answers 410 on AWS
    record = stack.runtime.storage.requests.get(stack.request_key("keep"))
    assert record is not None
    assert record.status == "QUEUED"
    assert stack.drain() == {"batchItemFailures": []}
    record = stack.runtime.storage.requests.get(stack.request_key("keep"))
    assert record is not None
    assert record.status == "COMPLETED"
    assert stack.frames(connection_id) == []


def test_logs_never_contain_the_token(stack):
    from streamer_handlers._lambda.observability import logger

    buffer = io.StringIO()
    previous = logger.registered_handler.setStream(buffer)
    try:
        token = stack.token()
        connect.handler(
            stack.events.connect("c-log=", headers={"Authorization": f"Bearer {token}"}),
            stack.context(),
        )
        logger.info("client sent %s", token)
        try:
            raise ValueError(f"bad token {token}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.registered_handler.setStream(previous)
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert token not in buffer.getvalue()
    assert lines[0]["correlation_id"].startswith("rid-")
    assert lines[1]["message"] == "client sent [REDACTED]"
    assert "[REDACTED]" in lines[2]["exception"]


def test_a_tenant_id_with_the_key_separator_is_refused_as_malformed(stack, capsys):
    token = stack.token("alice", "acme#globex")
    headers = {"Authorization": f"Bearer {token}"}
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        connect.handler(stack.events.authorizer(headers=headers), stack.context())
    response = connect.handler(stack.events.connect("c-sep=", headers=headers), stack.context())
    assert response == {"statusCode": 401}
    reasons = [m["reason"] for m in _emf(capsys) if "reason" in m]
    assert reasons == ["malformed", "malformed"]
    assert stack.runtime.storage.connections.get("c-sep=") is None


@pytest.mark.parametrize(
    ("failure", "status_code"),
    [(ValueError("tenant_id must be free of '#'"), 401), (RuntimeError("dynamodb down"), 500)],
    ids=["refused-identity", "outage"],
)
def test_a_connection_that_cannot_be_stored_is_answered_not_crashed(
    stack, monkeypatch, failure, status_code
):
    def put(connection: Any) -> None:
        raise failure

    monkeypatch.setattr(stack.runtime.storage.connections, "put", put)
    token = stack.token()
    event = stack.events.connect("c-put=", headers={"Authorization": f"Bearer {token}"})
    assert connect.handler(event, stack.context()) == {"statusCode": status_code}
