"""The API Gateway Management API (`@connections`), served by the gateway itself.

moto's apigatewaymanagementapi is a stub that never answers 410, so handlers tested
against it never exercise their dead-connection cleanup. Errors here carry the
`x-amzn-ErrorType` header and JSON body the real service sends, which is what makes
boto3 raise `GoneException` and `PayloadTooLargeException` rather than a bare ClientError.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from aiohttp import web

from streamer_infra.local._events import ClientFacts

__all__ = ["ManagedConnection", "api_timestamp", "management_routes"]


class ManagedConnection(Protocol):
    """What the management API needs of an open connection, and nothing more of the gateway."""

    facts: ClientFacts
    last_active_ms: int

    @property
    def gone(self) -> bool: ...

    async def send(self, data: str | bytes) -> bool: ...

    async def close(self, code: int, reason: str, *, why: str | None = None) -> None: ...


_PATH = "/{stage}/@connections/{connection_id}"


def _error(status: int, error_type: str, message: str) -> web.Response:
    return web.json_response(
        {"message": message},
        status=status,
        headers={"x-amzn-ErrorType": error_type, "x-amzn-RequestId": _request_id()},
    )


def _request_id() -> str:
    return str(uuid.uuid4())


def api_timestamp(epoch_ms: int) -> str:
    """A time as API Gateway writes it in `GetConnection`: UTC, always three fractional digits.

    The AWS CLI and raw HTTP clients show the string as received, so scripts that parse or
    compare it depend on the exact form (`2020-04-30T20:10:33.236Z`, also when the
    milliseconds are zero), not only on the instant.
    """
    seconds, millis = divmod(epoch_ms, 1000)
    whole = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{millis:03d}Z"


def management_routes(
    stage: str,
    max_message_bytes: int,
    lookup: Callable[[str], ManagedConnection | None],
) -> list[web.RouteDef]:
    """POST (send), GET (info) and DELETE (close) on one connection of `stage`, found by
    `lookup`: the gateway hands over a lookup, not itself, so neither module imports the
    other."""

    def _checked(request: web.Request) -> ManagedConnection | web.Response:
        if request.match_info["stage"] != stage:
            return _error(403, "ForbiddenException", "Forbidden")
        if "Authorization" not in request.headers:
            return _error(403, "ForbiddenException", "Missing Authentication Token")
        connection = lookup(request.match_info["connection_id"])
        if connection is None or connection.gone:
            return _error(410, "GoneException", "")
        return connection

    async def post(request: web.Request) -> web.StreamResponse:
        found = _checked(request)
        if isinstance(found, web.Response):
            return found
        limit = max_message_bytes
        if request.content_length is not None and request.content_length > limit:
            return _error(413, "PayloadTooLargeException", "Request Entity Too Large")
        data = await request.read()
        if len(data) > limit:
            return _error(413, "PayloadTooLargeException", "Request Entity Too Large")
        try:
            payload: str | bytes = data.decode("utf-8")
        except UnicodeDecodeError:
            payload = data
        if not await found.send(payload):
            return _error(410, "GoneException", "")
        return web.Response(status=200, headers={"x-amzn-RequestId": _request_id()})

    async def get(request: web.Request) -> web.StreamResponse:
        found = _checked(request)
        if isinstance(found, web.Response):
            return found
        identity = {"sourceIp": found.facts.source_ip}
        if found.facts.user_agent is not None:
            identity["userAgent"] = found.facts.user_agent
        return web.json_response(
            {
                "connectedAt": api_timestamp(found.facts.connected_at),
                "identity": identity,
                "lastActiveAt": api_timestamp(found.last_active_ms),
            },
            headers={"x-amzn-RequestId": _request_id()},
        )

    async def delete(request: web.Request) -> web.StreamResponse:
        found = _checked(request)
        if isinstance(found, web.Response):
            return found
        await found.close(1000, "Connection deleted")
        return web.Response(status=204, headers={"x-amzn-RequestId": _request_id()})

    return [web.post(_PATH, post), web.get(_PATH, get), web.delete(_PATH, delete)]
