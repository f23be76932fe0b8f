"""Reading tokens, principals and counts out of the gateway's and SQS's event shapes."""

from __future__ import annotations

import base64

import pytest
from streamer_core.auth import Principal
from streamer_handlers._lambda.api_events import (
    TokenLocation,
    authorizer_principal,
    connection_expires_at,
    find_token,
    is_authorizer_event,
    message_body,
    receive_count,
    websocket_event,
)

JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"headers": {"authorization": f"Bearer {JWT}"}}, TokenLocation(JWT, "header")),
        ({"headers": {"AUTHORIZATION": f"bearer {JWT}"}}, TokenLocation(JWT, "header")),
        ({"headers": {"Authorization": JWT}}, TokenLocation(JWT, "header")),
        (
            {"headers": {"Sec-WebSocket-Protocol": f"streamer.v1, bearer.{JWT}"}},
            TokenLocation(JWT, "subprotocol", "streamer.v1"),
        ),
        (
            {"headers": {"sec-websocket-protocol": JWT}},
            TokenLocation(JWT, "subprotocol", JWT),
        ),
        ({"queryStringParameters": {"token": JWT}}, TokenLocation(JWT, "query")),
        (
            {"queryStringParameters": {"Authorization": f"Bearer {JWT}"}},
            TokenLocation(JWT, "query"),
        ),
        ({"headers": {"Sec-WebSocket-Protocol": "chat, superchat"}}, None),
        ({"headers": None, "queryStringParameters": None}, None),
        ({}, None),
    ],
)
def test_find_token_in_every_documented_place(event, expected):
    assert find_token(event) == expected


def test_header_wins_over_query():
    event = {
        "headers": {"Authorization": "Bearer a.b.c"},
        "queryStringParameters": {"token": "x.y.z"},
    }
    assert find_token(event) == TokenLocation("a.b.c", "header")


def test_authorizer_principal_reads_the_context_api_gateway_passes_on():
    context = {
        "principalId": "u1",
        "userId": "u1",
        "tenantId": "t1",
        "permissions": "a b",
        "expiresAt": "1800000000",
        "integrationLatency": 5,
    }
    assert authorizer_principal({"authorizer": context}) == Principal(
        "u1", "t1", frozenset({"a", "b"}), 1800000000
    )
    assert authorizer_principal({"authorizer": {"principalId": "u1"}}) is None
    assert authorizer_principal({}) is None


def test_message_body_decodes_binary_frames():
    raw = b'{"action":"ping"}'
    event = websocket_event({"body": base64.b64encode(raw).decode(), "isBase64Encoded": True})
    assert message_body(event) == raw
    assert message_body(websocket_event({"body": "text", "isBase64Encoded": False})) == "text"
    assert message_body(websocket_event({})) == ""


def test_small_readers():
    assert is_authorizer_event({"type": "REQUEST", "methodArn": "arn"})
    assert not is_authorizer_event({"requestContext": {"eventType": "CONNECT"}})
    assert receive_count({"ApproximateReceiveCount": "4"}) == 4
    assert receive_count({}) == 1
    assert receive_count({"ApproximateReceiveCount": "junk"}) == 1
    assert connection_expires_at(1_800_000_000_000, 0) == 1_800_000_000 + 7200 + 300
    assert connection_expires_at(None, 1_000.5) == 1_000 + 7200 + 300
