"""Reading the shapes API Gateway and SQS hand to the functions.

The functions read the few fields they need straight from the event dictionaries.
Powertools' event data classes would add nothing here but their import, which loads every
event class Powertools knows, at every cold start. The helpers cover what the
shapes leave to the caller: where a token may hide on ``$connect``, the verified principal
of a message, and a safe view of absent fields (API Gateway omits ``headers`` or
``queryStringParameters`` entirely when there are none).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from streamer_core.auth import AuthError, Principal
from streamer_core.limits import MAX_CONNECTION_SECONDS

EXPIRY_SLACK_SECONDS = 5 * 60
"""Stored connections expire with API Gateway's connection lifetime, plus this slack."""

_JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
_BEARER_PREFIXES = ("bearer.", "bearer ")

TokenOrigin = Literal["header", "subprotocol", "query"]


@dataclass(frozen=True)
class TokenLocation:
    """A token found in a ``$connect`` request and how it arrived.

    ``subprotocol`` is what the gateway must echo in ``Sec-WebSocket-Protocol`` when the
    token came that way: browsers close a socket whose handshake does not pick one of the
    subprotocols they offered.
    """

    token: str
    origin: TokenOrigin
    subprotocol: str | None = None


def is_authorizer_event(event: Mapping[str, Any]) -> bool:
    """Whether API Gateway invoked the function as a REQUEST authorizer."""
    return event.get("type") == "REQUEST" and "methodArn" in event


def websocket_event(event: Mapping[str, Any]) -> Mapping[str, Any]:
    """A WebSocket proxy event (``$connect``, ``$disconnect`` or a message), read as it is."""
    return event


def _lower_keys(values: Mapping[str, Any] | None) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in (values or {}).items() if v is not None}


def _strip_bearer(value: str) -> str:
    value = value.strip()
    if value[:7].lower() in _BEARER_PREFIXES:
        return value[7:].strip()
    return value


def _from_subprotocols(header: str) -> TokenLocation | None:
    offered = [item.strip() for item in header.split(",") if item.strip()]
    for item in offered:
        candidate = _strip_bearer(item)
        if _JWT_SHAPE.fullmatch(candidate):
            others = [o for o in offered if o != item]
            return TokenLocation(candidate, "subprotocol", others[0] if others else item)
    return None


def find_token(event: Mapping[str, Any]) -> TokenLocation | None:
    """Find the caller's token: Authorization header, then subprotocol, then query string.

    The query string is kept for browsers, which can set neither headers nor (in some
    libraries) subprotocols; it is the last resort because URLs end up in access logs.
    """
    headers = _lower_keys(event.get("headers"))
    authorization = headers.get("authorization", "").strip()
    if authorization:
        token = _strip_bearer(authorization)
        if token:
            return TokenLocation(token, "header")
    protocols = headers.get("sec-websocket-protocol")
    if protocols:
        found = _from_subprotocols(protocols)
        if found is not None:
            return found
    query = _lower_keys(event.get("queryStringParameters"))
    for name in ("authorization", "token"):
        token = _strip_bearer(query.get(name, ""))
        if token:
            return TokenLocation(token, "query")
    return None


def authorizer_principal(request_context: Mapping[str, Any]) -> Principal | None:
    """The principal the ``$connect`` authorizer attached to the connection, if any.

    API Gateway repeats the authorizer's context on every later event of the connection,
    which is what spares the router a database read per message.
    """
    context = request_context.get("authorizer")
    if not isinstance(context, Mapping):
        return None
    try:
        return Principal.from_context(context)
    except AuthError:
        return None


def message_body(event: Mapping[str, Any]) -> str | bytes:
    """The raw frame: text as sent, binary frames as bytes (decoded from base64)."""
    raw = event.get("body")
    body = raw if isinstance(raw, str) else ""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return body
    return body


def connection_expires_at(connected_at_ms: int | None, now: float) -> int:
    """Epoch second after which a connection (and what hangs off it) is certainly gone."""
    start = connected_at_ms / 1000 if connected_at_ms else now
    return int(start) + MAX_CONNECTION_SECONDS + EXPIRY_SLACK_SECONDS


def receive_count(attributes: Mapping[str, Any]) -> int:
    """SQS's ApproximateReceiveCount of a record (1 on the first delivery)."""
    try:
        return max(1, int(attributes.get("ApproximateReceiveCount", 1)))
    except (TypeError, ValueError):
        return 1
