"""`streamer dev`'s console: a page at `/` that shows the local stack at work, live.

Connections (with a button that closes one through the management API), invocations with
their log lines, jobs with their progress, topics with their subscribers, a composer that
connects as any user with the TypeScript client, and a server-side publish. The page is
plain HTML, CSS and ES modules (`console_static/`); the client it connects with is the
built `packages/streamer-client-js/dist/` of this checkout, served as it is.

It exists only in the local stack, and because it mints tokens for any user and closes any
connection it is served only on a loopback address unless asked for explicitly. On
loopback its API also answers only to a loopback `Host` (a page of another site that
resolves its own name to 127.0.0.1 is refused) and changes state only on JSON requests
from its own origin (a form of another site cannot post to it).

HTTP API, all under `/_console/`:

- `GET /_console/api/state`: everything shown, as one JSON snapshot (`stack` describes the
  stack itself).
- `GET /_console/api/events`: server-sent events; a `snapshot` event, then `update` events
  holding only what changed (`invocations`, `connections`, `jobs`: upserts by id;
  `refused`, `topics`: whole lists).
- `GET /_console/api/invocations/{id}`: one invocation with its event and result.
- `POST /_console/api/token` `{"user", "tenant", "permissions": [...]}`: a token signed by
  the stack's development key, and the WebSocket URL.
- `POST /_console/api/publish` `{"tenant", "topic", "data"}`: `streamer_handlers.publish`,
  run in this process as a backend would run it; answers the delivery counts.

Closing a connection is the management API's own `DELETE /{stage}/@connections/{id}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from streamer_core.auth import redact_tokens

from streamer_infra.local._console_recorder import (
    Recorder,
    RecordingInvoker,
    TopicCount,
    topic_counts,
)

if TYPE_CHECKING:
    from streamer_infra.local._gateway import Gateway
    from streamer_infra.local._invoker import Invoker
    from streamer_infra.local._stack import LocalStack

__all__ = [
    "CLIENT_BUILD_COMMAND",
    "PREFIX",
    "Console",
    "client_dist",
    "console_enabled",
    "is_loopback",
]

logger = logging.getLogger("streamer.local.console")

PREFIX = "/_console"
STATIC_DIR = Path(__file__).with_name("console_static")
CLIENT_PACKAGE = Path("packages") / "streamer-client-js"
CLIENT_BUILD_COMMAND = "cd packages/streamer-client-js && npm ci && npm run build"
KEEPALIVE_SECONDS = 15.0
"""A comment line this often keeps proxies and the browser from timing the stream out."""

_ASSET_NAME = re.compile(r"[A-Za-z0-9_-]+\.(?:html|css|js|svg)")
_CONTENT_TYPES = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".map": "application/json",
    ".svg": "image/svg+xml",
}
_NO_CACHE = {"Cache-Control": "no-cache"}
_MAX_NAME = 128

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or name to listen on) reaches this machine only."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def console_enabled(host: str, requested: bool | None) -> bool:
    """On when asked for; when nobody said, only while the gateway listens on loopback."""
    if requested is None:
        return is_loopback(host)
    return requested


def client_dist(start: Path | None = None) -> Path | None:
    """`packages/streamer-client-js/dist` of the checkout this module lives in, if any.

    The built client is never copied into this package: the console loads what `npm run
    build` left in the checkout, so a change to the client shows on the next reload.
    """
    here = (start or Path(__file__)).resolve()
    for parent in here.parents:
        if (parent / CLIENT_PACKAGE / "package.json").is_file():
            return parent / CLIENT_PACKAGE / "dist"
    return None


def _host_name(host_header: str) -> str:
    """The name in a `Host` header, without its port (`[::1]:8080` is `::1`)."""
    if host_header.startswith("["):
        return host_header[1:].partition("]")[0]
    if host_header.count(":") == 1:
        return host_header.partition(":")[0]
    return host_header


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=_NO_CACHE)


def _json(value: Any, status: int = 200) -> web.Response:
    """Everything the console answers passes the token redaction; only `token` mints."""
    text = redact_tokens(json.dumps(value, default=str, separators=(",", ":")))
    return web.Response(
        text=text, status=status, content_type="application/json", headers=_NO_CACHE
    )


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_NAME:
        raise ValueError(f"{what} must be a non-empty string of at most {_MAX_NAME} characters")
    return value.strip()


class Console:
    """The console of one running `LocalStack`: its recorder, its routes, its streams."""

    def __init__(
        self, stack: LocalStack, *, loopback_only: bool, client_dir: Path | None = None
    ) -> None:
        self._stack = stack
        self._loopback_only = loopback_only
        self._client_dir = client_dir if client_dir is not None else client_dist()
        self._dynamodb: Any = None
        self._started_at = int(time.time() * 1000)
        self.recorder = Recorder(topics=self._read_topics, lookup=self._look_up_connection)

    # -- wiring into the stack ------------------------------------------------------------
    def wrap(self, invoker: Invoker) -> Invoker:
        """`invoker`, recording every invocation for the console."""
        return RecordingInvoker(invoker, self.recorder)

    def mount(self, gateway: Gateway) -> None:
        """Watch `gateway` and serve the console from its port (before it serves)."""
        gateway.observer = self.recorder
        guarded = self._guarded
        gateway.app.router.add_routes(
            [
                web.get("/", guarded(self._index)),
                web.get(f"{PREFIX}/", guarded(self._index)),
                web.get(f"{PREFIX}/static/{{name}}", guarded(self._static)),
                web.get(f"{PREFIX}/client/{{path:.+}}", guarded(self._client_file)),
                web.get(f"{PREFIX}/api/state", guarded(self._state)),
                web.get(f"{PREFIX}/api/events", guarded(self._events)),
                web.get(f"{PREFIX}/api/invocations/{{id:\\d+}}", guarded(self._invocation)),
                web.post(f"{PREFIX}/api/token", guarded(self._token, changes=True)),
                web.post(f"{PREFIX}/api/publish", guarded(self._publish, changes=True)),
            ]
        )

    def start(self) -> None:
        """Begin recording (on the stack's loop, once it serves)."""
        if not self._loopback_only:
            logger.warning(
                "the console is served on %s, which is not a loopback address: anyone who "
                "reaches it can mint tokens for any user and close any connection",
                self._stack.config.host,
            )
        self.recorder.start()

    async def close(self) -> None:
        """End every event stream, so that the server can stop without waiting for them."""
        await self.recorder.close()

    # -- the guard ------------------------------------------------------------------------
    def _guarded(self, handler: Handler, *, changes: bool = False) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            refusal = self._refusal(request, changes)
            if refusal is not None:
                return refusal
            return await handler(request)

        return guarded

    def _refusal(self, request: web.Request, changes: bool) -> web.Response | None:
        if self._loopback_only and not is_loopback(_host_name(request.host)):
            return _error(403, "the console answers only to a loopback host name")
        if not changes:
            return None
        if request.content_type != "application/json":
            return _error(415, "send JSON (Content-Type: application/json)")
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            return _error(403, "cross-origin requests are refused")
        return None

    # -- the page -------------------------------------------------------------------------
    async def _index(self, request: web.Request) -> web.StreamResponse:
        return self._asset("index.html")

    async def _static(self, request: web.Request) -> web.StreamResponse:
        return self._asset(request.match_info["name"])

    def _asset(self, name: str) -> web.StreamResponse:
        path = STATIC_DIR / name
        if not _ASSET_NAME.fullmatch(name) or not path.is_file():
            return _error(404, f"no console file {name!r}")
        return web.Response(
            body=path.read_bytes(),
            content_type=_CONTENT_TYPES[path.suffix],
            charset="utf-8",
            headers=_NO_CACHE,
        )

    async def _client_file(self, request: web.Request) -> web.StreamResponse:
        if self._client_dir is None or not (self._client_dir / "index.js").is_file():
            return _error(404, f"the TypeScript client is not built: {CLIENT_BUILD_COMMAND}")
        root = self._client_dir.resolve()
        path = (root / request.match_info["path"]).resolve()
        if (
            not path.is_relative_to(root)
            or path.suffix not in (".js", ".map")
            or not path.is_file()
        ):
            return _error(404, "no such file in the client's dist/")
        return web.Response(
            body=path.read_bytes(),
            content_type=_CONTENT_TYPES[path.suffix],
            charset="utf-8",
            headers=_NO_CACHE,
        )

    # -- reading ----------------------------------------------------------------------------
    def _stack_view(self) -> dict[str, Any]:
        stack = self._stack
        config = stack.config
        client_ready = self._client_dir is not None and (self._client_dir / "index.js").is_file()
        return {
            "stage": config.stage,
            "ws_url": stack.ws_url,
            "management_path": f"/{config.stage}/@connections/",
            "app": config.app or "the demo app",
            "functions": "from the built archive, in worker processes"
            if config.from_build
            else "on threads of this process",
            "started_at": self._started_at,
            "loopback_only": self._loopback_only,
            "client": {
                "available": client_ready,
                "module": f"{PREFIX}/client/index.js",
                "build": CLIENT_BUILD_COMMAND,
            },
        }

    async def _state(self, request: web.Request) -> web.StreamResponse:
        return _json({"stack": self._stack_view(), **self.recorder.snapshot()})

    async def _invocation(self, request: web.Request) -> web.StreamResponse:
        found = self.recorder.invocation_detail(int(request.match_info["id"]))
        if found is None:
            return _error(404, "no such invocation (the console keeps the recent ones)")
        return _json(found)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        stream, snapshot = self.recorder.open_stream()
        try:
            stack = redact_tokens(json.dumps(self._stack_view()))
            await response.write(
                f'event: snapshot\ndata: {{"stack":{stack},"state":{snapshot}}}\n\n'.encode()
            )
            while True:
                try:
                    message = await asyncio.wait_for(stream.queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if message is None:
                    break
                await response.write(f"event: update\ndata: {message}\n\n".encode())
        except (ConnectionError, RuntimeError):
            pass  # the page went away
        finally:
            self.recorder.close_stream(stream)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await response.write_eof()
        return response

    # -- acting -----------------------------------------------------------------------------
    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise ValueError("the body is not JSON") from None
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        return body

    async def _token(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._body(request)
            user = _name(body.get("user"), "user")
            tenant = _name(body.get("tenant"), "tenant")
            permissions = body.get("permissions", [])
            if isinstance(permissions, str):
                permissions = permissions.replace(",", " ").split()
            if not isinstance(permissions, list) or not all(
                isinstance(p, str) for p in permissions
            ):
                raise ValueError("permissions must be a list of strings")
        except ValueError as exc:
            return _error(400, str(exc))
        try:
            token = self._stack.token(user, tenant, permissions)
        except ValueError:
            return _error(
                409, "this stack has no private key: tokens come from your identity provider"
            )
        # The one answer that carries a token, on purpose: not redacted.
        return web.json_response(
            {"token": token, "url": self._stack.ws_url, "user": user, "tenant": tenant},
            headers=_NO_CACHE,
        )

    async def _publish(self, request: web.Request) -> web.StreamResponse:
        from streamer_handlers import publish

        try:
            body = await self._body(request)
            tenant = _name(body.get("tenant"), "tenant")
            topic = _name(body.get("topic"), "topic")
            data = body.get("data")
            report = await asyncio.to_thread(publish, tenant, topic, data)
        except ValueError as exc:
            return _error(400, str(exc))
        except Exception as exc:
            logger.exception("publish from the console failed")
            return _error(500, f"{type(exc).__name__}: {exc}")
        self.recorder.refresh_topics()  # a delivery may have pruned a vanished subscriber
        return _json(
            {
                "tenant": tenant,
                "topic": topic,
                "delivered": len(report.delivered),
                "gone": len(report.gone),
                "failed": len(report.failed),
            }
        )

    # -- the tables, read on a thread -------------------------------------------------------
    def _client(self) -> Any:
        if self._dynamodb is None:
            self._dynamodb = self._stack.aws_client("dynamodb")
        return self._dynamodb

    def _read_topics(self) -> list[TopicCount]:
        table = self._stack.resources.tables["subscriptions"]
        paginator = self._client().get_paginator("scan")
        items: list[dict[str, Any]] = []
        pages = paginator.paginate(
            TableName=table,
            ProjectionExpression="connection_id, topic, tenant_id, expires_at",
        )
        for page in pages:
            for raw in page.get("Items", []):
                item: dict[str, Any] = {}
                for name, value in raw.items():
                    if "S" in value:
                        item[name] = value["S"]
                    elif "N" in value:
                        item[name] = float(value["N"])
                items.append(item)
        return topic_counts(items, time.time())

    def _look_up_connection(self, connection_id: str) -> tuple[str, str, list[str]] | None:
        from streamer_core.storage import ConnectionStore

        table = self._stack.resources.tables["connections"]
        found = ConnectionStore(self._client(), table).get(connection_id)
        if found is None:
            return None
        return found.user_id, found.tenant_id, sorted(found.permissions)
