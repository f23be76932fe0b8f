"""API Gateway WebSocket events and Lambda contexts, shaped as AWS hands them over.

The handlers are the same code that runs on AWS, so they must never be able to tell the
local gateway from API Gateway by the shape of what they receive: every key AWS documents
for a WebSocket proxy integration and a REQUEST authorizer is present here, with values of
the same type and format.
"""

from __future__ import annotations

import base64
import functools
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "ApiIdentity",
    "ClientFacts",
    "LambdaContext",
    "authorizer_event",
    "aws_style_id",
    "connect_event",
    "disconnect_event",
    "message_event",
]


def aws_style_id() -> str:
    """An id shaped like API Gateway's connection and request ids ("L0SM9cOFvHcCIhw=").

    The URL-safe alphabet keeps ids usable as a path segment of the management API.
    """
    return base64.urlsafe_b64encode(os.urandom(11)).decode("ascii")


@dataclass(frozen=True)
class ApiIdentity:
    """What identifies the emulated API: the same for every event of one stack."""

    api_id: str
    stage: str
    domain_name: str
    region: str = "us-east-1"
    account_id: str = "123456789012"

    def method_arn(self, route_key: str) -> str:
        return (
            f"arn:aws:execute-api:{self.region}:{self.account_id}:"
            f"{self.api_id}/{self.stage}/{route_key}"
        )


@dataclass(frozen=True)
class ClientFacts:
    """What API Gateway learned from the upgrade request, repeated in every event."""

    connection_id: str
    connected_at: int
    source_ip: str
    user_agent: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    query: tuple[tuple[str, str], ...] = ()
    authorizer: Mapping[str, Any] | None = field(default=None)


def _single_and_multi(
    pairs: Iterable[tuple[str, str]],
) -> tuple[dict[str, str], dict[str, list[str]]]:
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value
        multi.setdefault(name, []).append(value)
    return single, multi


@functools.lru_cache(maxsize=4)
def _request_time(epoch_seconds: int) -> str:
    """CLF time of one second: formatted once for every message within that second."""
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


def _request_context(
    api: ApiIdentity,
    client: ClientFacts,
    route_key: str,
    event_type: str,
    request_id: str | None,
    now_ms: int | None,
) -> dict[str, Any]:
    """The part every event shares; a new request id and the wall clock unless given."""
    if request_id is None:
        request_id = aws_style_id()
    now_ms = _now_ms(now_ms)
    identity: dict[str, Any] = {"sourceIp": client.source_ip}
    if client.user_agent is not None:
        identity["userAgent"] = client.user_agent
    request_time = _request_time(now_ms // 1000)
    return {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id,
        "requestTime": request_time,
        "messageDirection": "IN",
        "stage": api.stage,
        "connectedAt": client.connected_at,
        "requestTimeEpoch": now_ms,
        "identity": identity,
        "requestId": request_id,
        "domainName": api.domain_name,
        "connectionId": client.connection_id,
        "apiId": api.api_id,
    }


def _with_authorizer(context: dict[str, Any], client: ClientFacts) -> dict[str, Any]:
    if client.authorizer is not None:
        context["authorizer"] = dict(client.authorizer)
    return context


def _handshake_parts(client: ClientFacts) -> dict[str, Any]:
    headers, multi_headers = _single_and_multi(client.headers)
    parts: dict[str, Any] = {"headers": headers, "multiValueHeaders": multi_headers}
    if client.query:
        query, multi_query = _single_and_multi(client.query)
        parts["queryStringParameters"] = query
        parts["multiValueQueryStringParameters"] = multi_query
    return parts


def authorizer_event(
    api: ApiIdentity, client: ClientFacts, request_id: str, *, now_ms: int | None = None
) -> dict[str, Any]:
    """The REQUEST authorizer event API Gateway sends before `$connect`.

    ``now_ms`` (every builder takes it) stamps the event at that epoch millisecond instead of
    the wall clock, for callers that drive the handlers with a clock of their own.
    """
    context = _request_context(api, client, "$connect", "CONNECT", request_id, now_ms)
    return {
        "type": "REQUEST",
        "methodArn": api.method_arn("$connect"),
        **_handshake_parts(client),
        "stageVariables": {},
        "requestContext": context,
    }


def connect_event(
    api: ApiIdentity, client: ClientFacts, request_id: str, *, now_ms: int | None = None
) -> dict[str, Any]:
    context = _request_context(api, client, "$connect", "CONNECT", request_id, now_ms)
    return {
        **_handshake_parts(client),
        "requestContext": _with_authorizer(context, client),
        "isBase64Encoded": False,
    }


def message_event(
    api: ApiIdentity,
    client: ClientFacts,
    *,
    route_key: str,
    body: str | bytes,
    now_ms: int | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """A MESSAGE event; binary frames travel base64-encoded, as API Gateway passes them."""
    context = _request_context(api, client, route_key, "MESSAGE", request_id, now_ms)
    context["messageId"] = aws_style_id()
    if isinstance(body, bytes):
        text, encoded = base64.b64encode(body).decode("ascii"), True
    else:
        text, encoded = body, False
    return {
        "requestContext": _with_authorizer(context, client),
        "body": text,
        "isBase64Encoded": encoded,
    }


def disconnect_event(
    api: ApiIdentity,
    client: ClientFacts,
    *,
    status_code: int,
    reason: str,
    now_ms: int | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    context = _request_context(api, client, "$disconnect", "DISCONNECT", request_id, now_ms)
    context["disconnectStatusCode"] = status_code
    context["disconnectReason"] = reason
    headers = {"Host": api.domain_name, "X-Forwarded-For": client.source_ip}
    return {
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "requestContext": _with_authorizer(context, client),
        "isBase64Encoded": False,
    }


class LambdaContext:
    """The attributes of the Lambda runtime's context object that handlers and Powertools read."""

    def __init__(
        self,
        function_name: str,
        *,
        timeout_seconds: float,
        memory_limit_in_mb: int,
        region: str = "us-east-1",
        account_id: str = "123456789012",
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{account_id}:function:{function_name}"
        self.memory_limit_in_mb = memory_limit_in_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.identity: Any = None
        self.client_context: Any = None
        self._timeout = timeout_seconds
        self._deadline = time.monotonic() + timeout_seconds

    @functools.cached_property
    def log_stream_name(self) -> str:
        """Made when first read: hardly any handler does, and every invocation has a context."""
        return f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"

    def start_clock(self) -> None:
        """Lambda's timeout counts from when the handler starts, not from when the
        invocation waited for a free worker."""
        self._deadline = time.monotonic() + self._timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _now_ms(now_ms: int | None = None) -> int:
    return int(time.time() * 1000) if now_ms is None else now_ms
