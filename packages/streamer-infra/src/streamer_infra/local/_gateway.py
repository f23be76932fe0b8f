"""The local API Gateway: WebSocket routes and the management API on one aiohttp port.

aiohttp rather than the `websockets` server because one port must also accept the
management API's POST bodies, and because a refused `$connect` has to become a plain HTTP
401/403 before the upgrade, which aiohttp allows by returning a response instead of
preparing the WebSocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any, Protocol

from aiohttp import WSMsgType, web
from streamer_core.auth import redact_tokens

from streamer_infra.local._authorizer import AuthorizerDecision, decide
from streamer_infra.local._events import (
    ApiIdentity,
    ClientFacts,
    authorizer_event,
    aws_style_id,
    connect_event,
    disconnect_event,
    message_event,
)
from streamer_infra.local._invoker import Invoker, LocalFunction
from streamer_infra.local._limits import (
    GatewayLimits,
    byte_size,
    header_section_bytes,
    oversize_error,
)
from streamer_infra.local._management import management_routes

__all__ = [
    "Gateway",
    "GatewayCounters",
    "GatewayObserver",
    "LiveConnection",
    "Route",
    "RouteTable",
]

logger = logging.getLogger("streamer.local.gateway")


class _RedactTokens(logging.Filter):
    """aiohttp's own log lines may quote request lines and handshake headers, where a
    browser client's token travels (query string, subprotocol)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            # A parser error's traceback quotes the offending line: format it here, redacted,
            # so that no handler formats the raw one.
            message = f"{message}\n{logging.Formatter().formatException(record.exc_info)}"
            record.exc_info = None
            record.exc_text = None
        record.msg = redact_tokens(message)
        record.args = None
        return True


for _name in ("aiohttp.access", "aiohttp.server", "aiohttp.web", "aiohttp.websocket"):
    logging.getLogger(_name).addFilter(_RedactTokens())

_GOING_AWAY = 1001

_PARSER_HEADROOM = 8
"""How far above the gateway's header limit aiohttp's own parser limits sit.

aiohttp refuses a head over its limits before any handler runs, with an HTTP/1.0 400 whose
body quotes the start of the offending line (a token, for an Authorization header) and
which the `websockets` client cannot parse. With its limits well above the gateway's, a head
API Gateway would refuse reaches `_websocket` and gets the gateway's own answer; only one
many times over the limit still meets aiohttp's.
"""

_HEADERS_TOO_LARGE = 431
"""The answer to a head over the limit. AWS documents the size (see `limits`), not the status;
431 (Request Header Fields Too Large) is what public reports of hitting this limit on API
Gateway show, and what RFC 6585 defines for it (a 400 would also be allowed, and tells less)."""


@dataclass(frozen=True)
class Route:
    """A route key's integration: which function, and whether its result goes back."""

    function: LocalFunction
    route_response: bool = False


@dataclass(frozen=True)
class RouteTable:
    """What the API's routes are wired to, built from the handlers' metadata."""

    routes: Mapping[str, Route]
    authorizer: LocalFunction | None = None

    def select(self, body: str | bytes) -> tuple[str, Route | None]:
        """Route selection on `$request.body.action`, falling back to `$default`."""
        key = _action_of(body)
        if key is not None and not key.startswith("$") and key in self.routes:
            return key, self.routes[key]
        return "$default", self.routes.get("$default")


def _action_of(body: str | bytes) -> str | None:
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    if isinstance(parsed, dict):
        action = parsed.get("action")
        if isinstance(action, str):
            return action
    return None


class GatewayObserver(Protocol):
    """What a watcher of the gateway (`streamer dev`'s console) is told, as it happens.

    Every call is made on the gateway's event loop and must return at once.
    """

    def connected(self, conn: LiveConnection) -> None: ...

    def disconnected(self, conn: LiveConnection, code: int, reason: str) -> None:
        """The socket ended; its `$disconnect` runs next."""

    def refused(self, facts: ClientFacts, request_id: str, status: int) -> None:
        """The authorizer or `$connect` refused the upgrade (`request_id`: their event's)."""

    def received(self, conn: LiveConnection, data: str | bytes) -> None: ...

    def sent(self, conn: LiveConnection, data: str | bytes) -> None:
        """A frame reached the socket, whoever sent it (a function, a management API call)."""


@dataclass(eq=False)
class LiveConnection:
    """One open socket, with what the management API reports about it."""

    facts: ClientFacts
    ws: web.WebSocketResponse
    opened_at: float
    last_active: float
    last_active_ms: int
    closing: bool = False
    close_code: int | None = None
    close_reason: str = ""
    messages_in: int = 0
    messages_out: int = 0
    observer: GatewayObserver | None = None

    @property
    def connection_id(self) -> str:
        return self.facts.connection_id

    @property
    def gone(self) -> bool:
        return self.closing or self.ws.closed

    async def send(self, data: str | bytes) -> bool:
        """Deliver one message; False when the socket is already going away."""
        if self.gone:
            return False
        try:
            if isinstance(data, bytes):
                await self.ws.send_bytes(data)
            else:
                await self.ws.send_str(data)
        except (ConnectionError, RuntimeError):
            return False
        self.messages_out += 1
        if self.observer is not None:
            self.observer.sent(self, data)
        return True

    async def close(self, code: int, reason: str, *, why: str | None = None) -> None:
        """Close from the server side; `why` (default: `reason`) goes to `$disconnect`."""
        if self.closing:
            return
        self.closing = True
        self.close_code = code
        self.close_reason = why or reason
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.close(code=code, message=reason.encode("utf-8"))


@dataclass
class GatewayCounters:
    """What the gateway has seen, for `streamer dev`'s summary and for tests to wait on."""

    connected: int = 0
    disconnected: int = 0
    refused: int = 0
    disconnect_reasons: Counter[str] = field(default_factory=Counter)


class Gateway:
    """Serves one stage of one WebSocket API."""

    def __init__(
        self,
        api: ApiIdentity,
        routes: RouteTable,
        invoker: Invoker,
        limits: GatewayLimits | None = None,
    ) -> None:
        self.api = api
        self.routes = routes
        self.invoker = invoker
        self.limits = limits or GatewayLimits()
        self.connections: dict[str, LiveConnection] = {}
        self.counters = GatewayCounters()
        self.observer: GatewayObserver | None = None
        """Told about sockets and frames (set before the gateway serves)."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sockets_done = asyncio.Event()
        self._sockets_done.set()
        self._shutting_down = False
        self._watchdog: asyncio.Task[None] | None = None
        self.app = self._build_app()

    def _build_app(self) -> web.Application:
        # The management API checks sizes itself so it can answer as the real service does.
        room = max(self.limits.max_header_bytes * _PARSER_HEADROOM, 8190)
        app = web.Application(
            client_max_size=self.limits.max_message_bytes * 8,
            handler_args={
                "max_line_size": room,
                "max_field_size": room,
                # The shortest header line is four bytes ("a:" and CRLF).
                "max_headers": room // 4,
            },
        )
        app.router.add_get("/{stage}", self._websocket)
        app.router.add_routes(
            management_routes(self.api.stage, self.limits.max_message_bytes, self.connections.get)
        )
        return app

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._settled)
        return task

    def _settled(self, task: asyncio.Task[Any]) -> None:
        # A bug in the gateway itself is logged where it happens, never left for asyncio's
        # "exception was never retrieved" at garbage collection.
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("gateway task failed", exc_info=task.exception())

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if _head_bytes(request) > self.limits.max_header_bytes:
            # A fixed body: nothing of the request (where tokens travel) is echoed.
            return _message_response(_HEADERS_TOO_LARGE, "Request Header Fields Too Large")
        if request.match_info["stage"] != self.api.stage:
            return _message_response(403, "Forbidden")
        # Offer the probe the client's own subprotocols: with none in common aiohttp logs
        # them, and a browser may carry its token there.
        offered = tuple(
            part.strip()
            for part in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
            if part.strip()
        )
        probe = web.WebSocketResponse(protocols=offered)
        if not probe.can_prepare(request).ok:
            return _message_response(426, "Upgrade Required")
        if self._shutting_down:
            return _message_response(503, "Service Unavailable")
        source_ip = request.remote or "127.0.0.1"
        # API Gateway adds the X-Forwarded-* trio to the client's own headers.
        forwarded = (
            ("X-Forwarded-For", source_ip),
            ("X-Forwarded-Port", str(request.url.port or 80)),
            ("X-Forwarded-Proto", request.scheme),
        )
        facts = ClientFacts(
            connection_id=aws_style_id(),
            connected_at=int(time.time() * 1000),
            source_ip=source_ip,
            user_agent=request.headers.get("User-Agent"),
            headers=(*request.headers.items(), *forwarded),
            query=tuple(request.query.items()),
        )
        request_id = aws_style_id()
        refusal, facts, protocols = await self._admit(facts, request_id)
        if refusal is not None:
            self.counters.refused += 1
            if self.observer is not None:
                self.observer.refused(facts, request_id, refusal.status)
            return refusal
        ws = web.WebSocketResponse(
            protocols=protocols,
            # API Gateway negotiates no extension: a client that works here without
            # permessage-deflate is the one that will meet AWS.
            compress=False,
            max_msg_size=self.limits.max_message_bytes * 8,
            autoping=True,
            timeout=5.0,
        )
        try:
            await ws.prepare(request)
        except (ConnectionError, RuntimeError):
            # The client vanished between `$connect` and the upgrade: still a disconnect.
            unopened = LiveConnection(facts, ws, 0.0, 0.0, 0)
            await asyncio.shield(self._spawn(self._disconnect(unopened, 1006, "Connection lost")))
            return ws
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().create_task(self._watch_limits())
        now = time.monotonic()
        conn = LiveConnection(facts, ws, now, now, int(time.time() * 1000))
        conn.observer = self.observer
        self.connections[facts.connection_id] = conn
        self._sockets_done.clear()
        self.counters.connected += 1
        if self.observer is not None:
            self.observer.connected(conn)
        code, reason = 1006, "Connection lost"
        try:
            code, reason = await self._serve(conn)
        finally:
            self.connections.pop(facts.connection_id, None)
            if not self.connections:
                self._sockets_done.set()
            if self.observer is not None:
                self.observer.disconnected(conn, code, reason)
            # A task of its own, spawned even if this request task is being cancelled:
            # `$disconnect` must run however the socket ended.
            disconnecting = self._spawn(self._disconnect(conn, code, reason))
        await asyncio.shield(disconnecting)
        return ws

    async def _admit(
        self, facts: ClientFacts, request_id: str
    ) -> tuple[web.Response | None, ClientFacts, tuple[str, ...]]:
        """Authorizer then `$connect`: a refusal here answers the upgrade request itself."""
        if self.routes.authorizer is not None:
            started = time.monotonic()
            invocation = await self.invoker.invoke(
                self.routes.authorizer,
                authorizer_event(self.api, facts, request_id),
                expected_errors=("Unauthorized",),
                fresh=True,
            )
            decision: AuthorizerDecision = decide(invocation, self.api.method_arn("$connect"))
            if decision.status != 200:
                return _message_response(decision.status, decision.message), facts, ()
            latency = int((time.monotonic() - started) * 1000)
            facts = replace(
                facts,
                authorizer={
                    "principalId": decision.principal_id,
                    **decision.context,
                    "integrationLatency": latency,
                },
            )
        route = self.routes.routes.get("$connect")
        if route is None:
            return None, facts, ()
        invocation = await self.invoker.invoke(
            route.function, connect_event(self.api, facts, request_id), fresh=True
        )
        if not invocation.ok:
            return _message_response(500, "Internal server error"), facts, ()
        result = invocation.result
        status = 200
        protocols: tuple[str, ...] = ()
        if isinstance(result, dict):
            raw_status = result.get("statusCode", 200)
            status = raw_status if isinstance(raw_status, int) else 502
            headers = result.get("headers")
            if isinstance(headers, dict):
                for name, value in headers.items():
                    if name.lower() == "sec-websocket-protocol" and isinstance(value, str):
                        protocols = (value,)
        if not 200 <= status < 300:
            return _message_response(status, _reason(status)), facts, ()
        return None, facts, protocols

    async def _serve(self, conn: LiveConnection) -> tuple[int, str]:
        """Read until the socket ends; answer why it ended, for the `$disconnect` event."""
        ws = conn.ws
        limits = self.limits
        while True:
            msg = await ws.receive()
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                data: str | bytes = msg.data
                size = byte_size(data, limits.max_message_bytes)
                if size > limits.max_message_bytes:
                    await conn.send(oversize_error(size, limits.max_message_bytes))
                    await conn.close(1009, "Message too big")
                    return 1009, "Message too big"
                conn.last_active = time.monotonic()
                conn.last_active_ms = int(time.time() * 1000)
                conn.messages_in += 1
                if conn.observer is not None:
                    conn.observer.received(conn, data)
                self._spawn(self._dispatch(conn, data))
                continue
            break
        if conn.close_code is not None:
            return conn.close_code, conn.close_reason
        if msg.type is WSMsgType.CLOSE:
            code = int(msg.data) if msg.data is not None else 1005
            if code == 1005:
                return code, "Client-side close frame status not set"
            return code, msg.extra or ""
        if msg.type is WSMsgType.ERROR and ws.close_code == 1009:
            return 1009, "Message too big"
        return 1006, "Connection lost"

    async def _watch_limits(self) -> None:
        """Close idle and over-age sockets; one sweep for all, not a timer per socket."""
        limits = self.limits
        interval = min(max(min(limits.idle_timeout, limits.max_lifetime) / 10, 0.05), 5.0)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for conn in list(self.connections.values()):
                if conn.closing:
                    continue
                if now - conn.opened_at >= limits.max_lifetime:
                    why = "Connection lifetime exceeded"
                elif now - conn.last_active >= limits.idle_timeout:
                    why = "Idle timeout"
                else:
                    continue
                self._spawn(conn.close(_GOING_AWAY, "Going away", why=why))

    async def _dispatch(self, conn: LiveConnection, body: str | bytes) -> None:
        route_key, route = self.routes.select(body)
        event = message_event(self.api, conn.facts, route_key=route_key, body=body)
        request_id = event["requestContext"]["requestId"]
        if route is None:
            await conn.send(_gateway_message("Forbidden", conn.connection_id, request_id))
            return
        invocation = await self.invoker.invoke(route.function, event, fresh=True)
        if not invocation.ok:
            await conn.send(
                _gateway_message("Internal server error", conn.connection_id, request_id)
            )
            return
        if route.route_response:
            body_out = _route_response_body(invocation.result)
            if body_out is not None:
                await conn.send(body_out)

    async def _disconnect(self, conn: LiveConnection, code: int, reason: str) -> None:
        route = self.routes.routes.get("$disconnect")
        if route is not None:
            event = disconnect_event(self.api, conn.facts, status_code=code, reason=reason)
            await self.invoker.invoke(route.function, event, fresh=True)
        # Counted once the function has run, so "disconnected" means "cleaned up".
        self.counters.disconnected += 1
        self.counters.disconnect_reasons[reason] += 1

    async def shutdown(self, grace: float = 5.0) -> None:
        """Close every client with 1001 and wait for every `$disconnect` to have run."""
        self._shutting_down = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        await asyncio.gather(
            *(conn.close(_GOING_AWAY, "Going away") for conn in list(self.connections.values()))
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._sockets_done.wait(), grace)
        pending = [task for task in self._tasks if not task.done()]
        if pending:
            _, still_running = await asyncio.wait(pending, timeout=grace)
            for task in still_running:
                task.cancel()


def _route_response_body(result: Any) -> str | None:
    if isinstance(result, dict):
        body = result.get("body")
        if body is None:
            return None
        return body if isinstance(body, str) else json.dumps(body)
    if result is None:
        return None
    return json.dumps(result)


def _gateway_message(message: str, connection_id: str, request_id: str) -> str:
    """The message API Gateway itself sends to the caller when a route cannot be served."""
    return json.dumps({"message": message, "connectionId": connection_id, "requestId": request_id})


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _head_bytes(request: web.BaseRequest) -> int:
    version = request.version
    line = f"{request.method} {request.raw_path} HTTP/{version.major}.{version.minor}"
    return header_section_bytes(line.encode("utf-8", "surrogateescape"), request.raw_headers)


def _message_response(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)
