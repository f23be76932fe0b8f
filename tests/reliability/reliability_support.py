"""What the reliability tests share: the handlers on moto, and a raw client for the local stack.

Two harnesses, because the properties need two speeds. Hypothesis runs hundreds of examples,
which only the handlers called in-process on moto can afford (``Harness``); faults that live
between processes (a killed worker, a dropped socket, a thousand concurrent sockets) need the
real gateway, queue poller and management API of the local stack (``RawClient``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# `handler_doubles` (tests/handlers) is on the path: the suite's conftest puts it there.
from handler_doubles import (
    ACCOUNT,
    REGION,
    FakeLambdaContext,
    RecordingSender,
)
from streamer_core.auth import TokenIssuer
from streamer_core.storage import RequestKey
from streamer_handlers import ActionError, ProgressReporter, Request, Streamer
from streamer_handlers.deployment import ConnectionPruner, Runtime, Settings, set_runtime
from streamer_handlers.functions import connect, disconnect, processor, router
from streamer_infra.local import _events as events
from streamer_infra.local._events import ApiIdentity, ClientFacts
from streamer_infra.local._sqs import sqs_event

API_ID = "rel0api123"
STAGE = "reliability"
DOMAIN = f"{API_ID}.execute-api.{REGION}.amazonaws.com"

HANG_GUARD = 60.0
"""Only bounds how long a broken test waits; nothing asserts on how long anything took."""

_ids = itertools.count(1)


# ----------------------------------------------------------------------------- handlers on moto


class LambdaContext(FakeLambdaContext):
    """The parts of Lambda's context object the handlers read."""

    function_name = "streamer-reliability"
    request_id_prefix = "lambda"


class HeldTimer:
    """A progress flush that is never fired: ``finish`` flushes what is held back."""

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def hold_timers(delay: float, callback: Callable[[], None]) -> HeldTimer:
    """A scheduler that starts no thread, so no frame can arrive after a test has looked."""
    return HeldTimer()


API = ApiIdentity(api_id=API_ID, stage=STAGE, domain_name=DOMAIN, region=REGION, account_id=ACCOUNT)


def _client(
    connection_id: str,
    headers: dict[str, str] | None = None,
    authorizer: dict[str, Any] | None = None,
) -> ClientFacts:
    """What API Gateway repeats in every event of one connection, in the local gateway's shape."""
    return ClientFacts(
        connection_id=connection_id,
        connected_at=int(time.time() * 1000),
        source_ip="192.0.2.44",
        user_agent="reliability",
        headers=tuple({"Host": DOMAIN, "Sec-WebSocket-Version": "13", **(headers or {})}.items()),
        authorizer=authorizer,
    )


def _request_id() -> str:
    return f"rid-{next(_ids)}"


def authorizer_event(headers: dict[str, str]) -> dict[str, Any]:
    """API Gateway's REQUEST authorizer event for ``$connect``."""
    return events.authorizer_event(API, _client(f"conn-{next(_ids)}=", headers), _request_id())


def connect_event(
    connection_id: str, headers: dict[str, str], authorizer: dict[str, Any] | None
) -> dict[str, Any]:
    return events.connect_event(API, _client(connection_id, headers, authorizer), _request_id())


def message_event(
    connection_id: str, body: str | bytes, authorizer: dict[str, Any] | None, route_key: str
) -> dict[str, Any]:
    return events.message_event(
        API,
        _client(connection_id, authorizer=authorizer),
        route_key=route_key,
        body=body,
        request_id=_request_id(),
    )


def disconnect_event(connection_id: str, authorizer: dict[str, Any] | None) -> dict[str, Any]:
    return events.disconnect_event(
        API,
        _client(connection_id, authorizer=authorizer),
        status_code=1001,
        reason="Going away",
        request_id=_request_id(),
    )


def route_key_for(body: str | bytes, route_keys: Iterable[str]) -> str:
    """API Gateway's route selection on ``$request.body.action``, ``$default`` otherwise."""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return "$default"
    action = parsed.get("action") if isinstance(parsed, dict) else None
    if isinstance(action, str) and not action.startswith("$") and action in set(route_keys):
        return action
    return "$default"


def authorize(token: str) -> dict[str, Any]:
    """Call the connect function as the ``$connect`` authorizer (raises on 401)."""
    result: dict[str, Any] = connect.handler(
        authorizer_event({"Authorization": f"Bearer {token}"}), LambdaContext()
    )
    return result


def policy_effect(policy: dict[str, Any]) -> str:
    return str(policy["policyDocument"]["Statement"][0]["Effect"])


@dataclass
class Harness:
    """The four functions wired to moto and a recording sender, driven with real event shapes."""

    runtime: Runtime
    sender: RecordingSender
    issuer: TokenIssuer
    sqs: Any
    queue_url: str
    app: Streamer
    authorizers: dict[str, dict[str, Any]] = field(default_factory=dict)
    owners: dict[str, tuple[str, str]] = field(default_factory=dict)

    def connect(self, sub: str, tenant: str, permissions: Sequence[str] = ()) -> str:
        """Authorizer, then the ``$connect`` route, as API Gateway runs them; the new id."""
        connection_id = f"conn-{next(_ids)}="
        token = self.issuer.issue(sub, tenant, permissions)
        policy = authorize(token)
        assert policy_effect(policy) == "Allow"
        authorizer = {
            "principalId": policy["principalId"],
            **policy["context"],
            "integrationLatency": 3,
        }
        response = connect.handler(
            connect_event(connection_id, {"Authorization": f"Bearer {token}"}, authorizer),
            LambdaContext(),
        )
        assert response["statusCode"] == 200
        self.authorizers[connection_id] = authorizer
        self.owners[connection_id] = (tenant, sub)
        return connection_id

    def send_raw(self, connection_id: str, body: str | bytes) -> dict[str, Any]:
        """One message through the router; the route response it answers with, decoded."""
        event = message_event(
            connection_id,
            body,
            self.authorizers.get(connection_id),
            route_key_for(body, self.route_keys()),
        )
        response = router.handler(event, LambdaContext())
        assert response["statusCode"] == 200, response
        decoded: dict[str, Any] = json.loads(response["body"])
        return decoded

    def send(self, connection_id: str, action: str, payload: Any = None, **frame: Any) -> Any:
        body = json.dumps({"action": action, "payload": payload or {}, **frame})
        return self.send_raw(connection_id, body)

    def disconnect(self, connection_id: str) -> None:
        disconnect.handler(
            disconnect_event(connection_id, self.authorizers.get(connection_id)),
            LambdaContext(),
        )

    def route_keys(self) -> set[str]:
        return {"$default", "ping", "subscribe", "unsubscribe", "status", "cancel", *self.app}

    def drain(self) -> int:
        """Hand every queued message to the processor, batch by batch, as Lambda's poller does.

        Returns how many records ran; a record left for retry is made visible again at once,
        so a drain ends only when the queue is empty (bounded against a processor that loops).
        """
        ran = 0
        messages: list[dict[str, Any]] = []
        for _ in range(30):
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=10,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not messages:
                return ran
            event = sqs_event(
                messages, queue_arn=f"arn:aws:sqs:{REGION}:{ACCOUNT}:work", region=REGION
            )
            result = processor.handler(event, LambdaContext())
            failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
            ran += len(messages)
            for m in messages:
                if m["MessageId"] in failed:
                    self.sqs.change_message_visibility(
                        QueueUrl=self.queue_url,
                        ReceiptHandle=m["ReceiptHandle"],
                        VisibilityTimeout=0,
                    )
                else:
                    self.sqs.delete_message(
                        QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"]
                    )
        stuck = [
            (m["Body"], m["Attributes"]["ApproximateReceiveCount"], self._describe(m["Body"]))
            for m in messages
        ]
        raise AssertionError(f"the queue never drained, messages retried forever: {stuck}")

    def _describe(self, body: str) -> str:
        try:
            record = self.runtime.storage.requests.get(RequestKey.from_json(body))
        except Exception as error:
            return f"request record unreadable: {type(error).__name__}: {error}"
        if record is None:
            return "no request record"
        return (
            f"status={record.status.value} attempts={record.attempts} "
            f"lease_until={record.lease_until} action={record.action}"
        )

    def request(self, tenant: str, user: str, request_id: str) -> Any:
        return self.runtime.storage.requests.get(RequestKey(tenant, user, request_id))


def isolation_app() -> Streamer:
    """Actions whose every frame names the tenant and user it was produced for.

    That makes "no frame reaches another tenant" checkable on the frame itself: a frame's
    origin is written into it by the code that ran on the owner's behalf.
    """
    app = Streamer()

    @app.action("whoami")
    def whoami(request: Request) -> Any:
        return {"tenant": request.tenant_id, "user": request.user_id}

    @app.action("job", asynchronous=True)
    def job(request: Request, progress: ProgressReporter) -> Any:
        origin = {"tenant": request.tenant_id, "user": request.user_id}
        progress.report(50, "half", **origin)
        progress.report(100, "done", **origin)
        return origin

    return app


def fuzz_app() -> Streamer:
    """Every kind of action a frame can name: sync, async, guarded by a permission, failing."""
    from streamer_core import ErrorCode

    app = Streamer()

    @app.action("echo")
    def echo(request: Request) -> Any:
        return request.payload

    @app.action("generate_report", asynchronous=True)
    def generate_report(request: Request, progress: ProgressReporter) -> Any:
        return {"steps": request.payload.get("steps")}

    @app.action("admin.purge", permissions={"admin"})
    def purge(request: Request) -> Any:
        return "purged"

    @app.action("strict")
    def strict(request: Request) -> Any:
        if "name" not in request.payload:
            raise ActionError(ErrorCode.VALIDATION_ERROR, "payload.name is required")
        return "ok"

    return app


# ----------------------------------------------------------------------------- the token watch


class MintedTokens:
    """Every token issued in this process since the watch started."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, str] = {}

    def add(self, token: str, subject: object) -> None:
        """Remember ``token``; a leak is reported by number and subject, never by value."""
        with self._lock:
            self._tokens[token] = f"token #{len(self._tokens) + 1} (sub={subject})"

    def __len__(self) -> int:
        return len(self._tokens)

    def leaks(self, text: str) -> list[str]:
        """Labels of the tokens found in ``text``, whole or by their signature alone.

        The signature is the secret part: a log line that kept it but lost the header (a
        truncated or re-encoded line) still hands out a usable credential.
        """
        if not text:
            return []
        with self._lock:
            tokens = list(self._tokens.items())
        found = []
        for token, label in tokens:
            signature = token.rsplit(".", 1)[-1]
            if token in text or (len(signature) >= 40 and signature in text):
                found.append(label)
        return found


MINTED = MintedTokens()


class LogTap(logging.Handler):
    """Renders every log record as production would write it, and keeps the lines.

    Records of the handlers' Powertools logger ("streamer" and its children) reach CloudWatch
    through Powertools' formatter; any other logger's records through the runtime's plain
    root handler, message and traceback as they are.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self._guard = threading.Lock()
        self._plain = logging.Formatter("%(levelname)s %(name)s %(message)s")
        self._powertools: logging.Formatter | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self._render(record)
        except Exception:
            line = f"{record.name} {record.msg!r} {record.args!r} {record.exc_info!r}"
        with self._guard:
            self.lines.append(line)

    def _render(self, record: logging.LogRecord) -> str:
        if record.name == "streamer" or record.name.startswith("streamer."):
            if self._powertools is None:
                from streamer_handlers._lambda.observability import logger

                self._powertools = logger.registered_formatter
            return self._powertools.format(record)
        return self._plain.format(record)

    def drain(self) -> str:
        with self._guard:
            text = "\n".join(self.lines)
            self.lines = []
        return text

    def text(self) -> str:
        """What was logged in the current test phase so far (without draining it)."""
        with self._guard:
            return "\n".join(self.lines)


def build_harness(
    aws: dict[str, Any], keys: tuple[str, str], app: Streamer, **settings: Any
) -> Harness:
    """The four functions on moto serving ``app``, installed as the process's runtime."""
    defaults: dict[str, Any] = {
        "env": aws["env"],
        "queue_url": aws["queue_url"],
        "management_endpoint": "https://example.invalid/reliability",
        "jwt_public_key": keys[1],
        "rate_limit": 1_000_000,
        "progress_per_second": 1000.0,
        "max_receive_count": 3,
    }
    defaults.update(settings)
    sender = RecordingSender()
    runtime = Runtime(
        Settings(**defaults),
        dynamodb=aws["dynamodb"],
        sqs=aws["sqs"],
        sender=sender,
        app=app,
        schedule=hold_timers,
    )
    sender.on_gone = ConnectionPruner(runtime.storage)
    set_runtime(runtime)
    return Harness(
        runtime=runtime,
        sender=sender,
        issuer=TokenIssuer(keys[0], algorithm="ES256"),
        sqs=aws["sqs"],
        queue_url=aws["queue_url"],
        app=app,
    )


# ----------------------------------------------------------------------------- the local stack


RELIABILITY_APP = "streamer_reliability_app:app"
FAST_HANDLER_ENV = {
    "STREAMER_DEMO_DELAY": "0",
    "STREAMER_PROGRESS_PER_SECOND": "1000",
}


def stack_config(tmp: Path, **overrides: Any) -> Any:
    """A stack on a free port serving the reliability app, with its own key pair."""
    from streamer_core.auth import generate_key_pair
    from streamer_infra.local import DevKeys, LocalStackConfig

    private_pem, public_pem = generate_key_pair()
    settings: dict[str, Any] = {
        "port": 0,
        "app": RELIABILITY_APP,
        "keys": DevKeys(public_pem, private_pem),
        "state_dir": tmp,
        "environment": FAST_HANDLER_ENV,
    }
    settings.update(overrides)
    return LocalStackConfig(**settings)


def deployed_functions(**changes: dict[str, Any]) -> list[Any]:
    """The reliability app's function specs, with per-function changes (timeout, handler).

    A handler may be a callable: the local stack deploys it through the same wiring.
    """
    import dataclasses

    import streamer_reliability_app
    from streamer_handlers.deployment import function_specs

    return [
        dataclasses.replace(spec, **changes.get(spec.name, {}))
        for spec in function_specs(streamer_reliability_app.app)
    ]


class TrackedFunction:
    """Wraps a handler to know when none of its invocations is still running.

    A timed-out invocation keeps its thread (Python cannot kill one); a test that lets such
    a worker go on must know when it is really done before judging what it did.
    """

    def __init__(self, handler: Callable[[dict[str, Any], Any], Any]) -> None:
        self._handler = handler
        self._running = 0
        self._lock = threading.Lock()
        self.invocations = 0

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        with self._lock:
            self._running += 1
            self.invocations += 1
        try:
            return self._handler(event, context)
        finally:
            with self._lock:
                self._running -= 1

    @property
    def running(self) -> int:
        with self._lock:
            return self._running


async def open_client(stack: Any, token: str, name: str = "") -> RawClient:
    """A raw protocol client with the token in the Authorization header."""
    from websockets.asyncio.client import connect

    ws = await connect(
        stack.ws_url,
        additional_headers={"Authorization": f"Bearer {token}"},
        open_timeout=HANG_GUARD,
        max_queue=None,
    )
    return RawClient(ws, name)


class RawClient:
    """A socket speaking the documented protocol, recording every frame it ever received."""

    def __init__(self, ws: Any, name: str = "") -> None:
        self.ws = ws
        self.name = name
        self.frames: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())
        self.closed_with: BaseException | None = None

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                self.frames.append(json.loads(message))
                self._changed.set()
        except Exception as error:
            self.closed_with = error
        finally:
            self._changed.set()

    async def send(self, action: str, payload: Any = None, **frame: Any) -> None:
        await self.ws.send(json.dumps({"action": action, "payload": payload or {}, **frame}))

    def of(self, request_id: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("request_id") == request_id]

    async def wait_for(
        self, condition: Callable[[], bool], what: str, guard: float = HANG_GUARD
    ) -> None:
        """Wait until ``condition`` holds over the frames received so far."""
        deadline = time.monotonic() + guard
        while not condition():
            if self._reader.done() and not condition():
                raise AssertionError(f"{self.name}: socket ended before {what}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name}: never happened: {what}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 1.0))
            except TimeoutError:
                continue

    async def reply(self, request_id: str) -> dict[str, Any]:
        await self.wait_for(lambda: bool(self.of(request_id)), f"a reply to {request_id}")
        return self.of(request_id)[0]

    async def terminal(self, request_id: str, guard: float = HANG_GUARD) -> dict[str, Any]:
        """The ``complete`` or ``error`` frame of an asynchronous request."""

        def ended() -> bool:
            return any(f["type"] in ("complete", "error") for f in self.of(request_id))

        await self.wait_for(ended, f"the end of {request_id}", guard)
        return next(f for f in self.of(request_id) if f["type"] in ("complete", "error"))

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.gather(self._reader, return_exceptions=True)

    def abort(self) -> None:
        """Drop the TCP connection without a close frame: a client that vanished."""
        self.ws.transport.abort()


async def wait_until(condition: Callable[[], bool], what: str, guard: float = HANG_GUARD) -> None:
    """Poll a condition on server-side state until it holds."""
    deadline = time.monotonic() + guard
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.05)
