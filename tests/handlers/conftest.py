"""Fixtures for the handler tests: moto-backed AWS, real-shaped events, a recording sender.

Events follow the shapes API Gateway (WebSocket proxy integration and REQUEST authorizer)
and SQS (Lambda event source mapping) document. Delivery to clients is recorded by a fake
sender injected through the runtime, because moto's management API never answers 410.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import json
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from streamer_core.auth import TokenIssuer, generate_key_pair
from streamer_handlers import ActionError, ProgressReporter, Request, Streamer
from streamer_handlers.deployment import Runtime, Settings, reset_runtime, set_runtime
from streamer_handlers.functions import connect, disconnect, processor, router
from streamer_infra.local._events import (
    ApiIdentity,
    ClientFacts,
    authorizer_event,
    connect_event,
    disconnect_event,
    message_event,
)
from streamer_infra.local._sqs import sqs_event

HANDLERS_DIR = Path(__file__).resolve().parent
if str(HANDLERS_DIR) not in sys.path:
    sys.path.insert(0, str(HANDLERS_DIR))

from handler_doubles import (  # noqa: E402 - importable only from here on
    ACCOUNT,
    REGION,
    FakeLambdaContext,
    RecordingSender,
    fresh_tables_and_queue,
    moto_clients,
)

API_ID = "abcdef1234"
STAGE = "test"
DOMAIN = f"{API_ID}.execute-api.{REGION}.amazonaws.com"


class FakeClock:
    """Epoch seconds that only move when a test says so."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ManualTimer:
    """A scheduled progress flush that runs only when the test fires it."""

    def __init__(self, delay: float, callback: Callable[[], None]) -> None:
        self.delay = delay
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualScheduler:
    """Collects scheduled flushes instead of starting threads."""

    def __init__(self) -> None:
        self.timers: list[ManualTimer] = []

    def __call__(self, delay: float, callback: Callable[[], None]) -> ManualTimer:
        timer = ManualTimer(delay, callback)
        self.timers.append(timer)
        return timer

    def fire(self) -> int:
        """Run every pending (not cancelled) flush; returns how many ran."""
        pending = [t for t in self.timers if not t.cancelled]
        self.timers = []
        for timer in pending:
            timer.cancelled = True
            timer.callback()
        return len(pending)


_counter = itertools.count(1)


API = ApiIdentity(api_id=API_ID, stage=STAGE, domain_name=DOMAIN, region=REGION, account_id=ACCOUNT)


def _client(
    connection_id: str,
    now_ms: int,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    authorizer: dict[str, Any] | None = None,
) -> ClientFacts:
    """The facts API Gateway repeats in every event of one connection (the product's shape)."""
    return ClientFacts(
        connection_id=connection_id,
        connected_at=now_ms,
        source_ip="192.0.2.10",
        user_agent="pytest",
        headers=tuple({"Host": DOMAIN, "Sec-WebSocket-Version": "13", **(headers or {})}.items()),
        query=tuple((query or {}).items()),
        authorizer=authorizer,
    )


def _request_id() -> str:
    """Test request ids stay recognisable in the log lines and failure records they reach."""
    return f"rid-{next(_counter)}"


@dataclass
class Events:
    """Builds API Gateway WebSocket and SQS events as AWS documents them.

    The WebSocket events come from the local gateway's own builders, stamped by the test clock.
    """

    clock: FakeClock

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def authorizer(
        self,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
        connection_id: str = "conn-auth=",
    ) -> dict[str, Any]:
        now_ms = self._now_ms()
        client = _client(connection_id, now_ms, headers, query)
        return authorizer_event(API, client, _request_id(), now_ms=now_ms)

    def connect(
        self,
        connection_id: str,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
        authorizer: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        now_ms = self._now_ms()
        client = _client(connection_id, now_ms, headers, query, authorizer)
        return connect_event(API, client, _request_id(), now_ms=now_ms)

    def message(
        self,
        connection_id: str,
        body: str | bytes,
        authorizer: dict[str, Any] | None,
        route_key: str = "$default",
    ) -> dict[str, Any]:
        now_ms = self._now_ms()
        client = _client(connection_id, now_ms, authorizer=authorizer)
        return message_event(
            API, client, route_key=route_key, body=body, now_ms=now_ms, request_id=_request_id()
        )

    def disconnect(self, connection_id: str, authorizer: dict[str, Any] | None) -> dict[str, Any]:
        now_ms = self._now_ms()
        client = _client(connection_id, now_ms, authorizer=authorizer)
        return disconnect_event(
            API,
            client,
            status_code=1000,
            reason="Client-side close frame status code",
            now_ms=now_ms,
            request_id=_request_id(),
        )

    def sqs(self, messages: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """``messages`` are dicts with body, receive_count and optional message_attributes.

        Each is shaped as SQS's ReceiveMessage returns it, then handed to the local queue
        poller's own event builder, as Lambda's event source mapping would.
        """
        now_ms = str(int(self.clock() * 1000))
        received = [
            {
                "MessageId": message.get("message_id", f"msg-{next(_counter)}"),
                "ReceiptHandle": f"handle-{next(_counter)}",
                "Body": message["body"],
                "Attributes": {
                    "ApproximateReceiveCount": str(message.get("receive_count", 1)),
                    "SentTimestamp": now_ms,
                    "SenderId": "AIDAEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": now_ms,
                },
                "MessageAttributes": dict(message.get("message_attributes") or {}),
                "MD5OfBody": hashlib.md5(message["body"].encode()).hexdigest(),
            }
            for message in messages
        ]
        queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:streamer-test-work"
        return sqs_event(received, queue_arn=queue_arn, region=REGION)


def build_app() -> Streamer:
    """Actions covering every path the handlers must handle."""
    app = Streamer()
    gate = threading.Event()
    app.gate = gate  # type: ignore[attr-defined]

    @app.action("echo")
    def echo(request: Request) -> Any:
        return {"payload": request.payload, "user": request.user_id, "tenant": request.tenant_id}

    @app.action("async.echo")
    async def async_echo(request: Request) -> Any:
        return request.payload

    @app.action("slow")
    def slow(request: Request) -> Any:
        gate.wait(5)
        return "late"

    @app.action("refuse")
    def refuse(request: Request) -> Any:
        raise ActionError(_code("CONFLICT"), "already done", {"hint": "x"})

    @app.action("crash")
    def crash(request: Request) -> Any:
        raise RuntimeError("secret internals /etc/passwd")

    @app.action("not.json")
    def not_json(request: Request) -> Any:
        return {"value": object()}

    @app.action("admin.purge", permissions={"admin"})
    def purge(request: Request) -> Any:
        return "purged"

    @app.action("job", asynchronous=True)
    def job(request: Request, progress: ProgressReporter) -> Any:
        steps = int(request.payload.get("steps", 4))
        for step in range(1, steps + 1):
            progress.report(step * 100 / steps, f"step {step}", step=step)
        return {"done": steps, "permissions": sorted(request.permissions)}

    @app.action("async.job", asynchronous=True)
    async def async_job(request: Request, progress: ProgressReporter) -> Any:
        progress.report(50, "half")
        return "async done"

    @app.action("job.fails", asynchronous=True)
    def job_fails(request: Request, progress: ProgressReporter) -> Any:
        raise ActionError(_code("VALIDATION_ERROR"), "bad report spec")

    @app.action("job.crashes", asynchronous=True)
    def job_crashes(request: Request, progress: ProgressReporter) -> Any:
        progress.report(10, "about to crash")
        raise RuntimeError("boom with token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl")

    @app.action("job.cancellable", asynchronous=True)
    def job_cancellable(request: Request, progress: ProgressReporter) -> Any:
        cancel_at = int(request.payload.get("cancel_at", 2))
        hook = request.payload.get("hook")
        for step in range(1, 50):
            if step == cancel_at and hook is not None:
                _hooks[str(hook)]()
            progress.report(step, f"step {step}")
        return "finished without cancel"

    @app.action("job.slow", asynchronous=True, timeout=0.05)
    def job_slow(request: Request, progress: ProgressReporter) -> Any:
        gate.wait(5)
        return "late"

    @app.action("job.admin", asynchronous=True, permissions={"reports:write"})
    def job_admin(request: Request, progress: ProgressReporter) -> Any:
        return "ok"

    return app


_hooks: dict[str, Callable[[], None]] = {}


def _code(name: str) -> Any:
    from streamer_core import ErrorCode

    return ErrorCode(name)


@dataclass
class Stack:
    """The four functions wired to moto, with helpers that speak in frames."""

    runtime: Runtime
    events: Events
    sender: RecordingSender
    issuer: TokenIssuer
    sqs: Any
    queue_url: str
    clock: FakeClock
    scheduler: ManualScheduler
    app: Streamer
    hooks: dict[str, Callable[[], None]]
    _principals: dict[str, dict[str, Any]] = field(default_factory=dict)

    def token(
        self, sub: str = "alice", tenant: str = "acme", permissions: Sequence[str] = ()
    ) -> str:
        return self.issuer.issue(sub, tenant, permissions)

    def connect(
        self,
        sub: str = "alice",
        tenant: str = "acme",
        permissions: Sequence[str] = (),
        connection_id: str | None = None,
    ) -> str:
        """Run the authorizer and the $connect route as API Gateway would; returns the id."""
        connection_id = connection_id or f"conn-{next(_counter)}="
        token = self.token(sub, tenant, permissions)
        headers = {"Authorization": f"Bearer {token}"}
        policy = connect.handler(self.events.authorizer(headers=headers), FakeLambdaContext())
        assert policy["policyDocument"]["Statement"][0]["Effect"] == "Allow"
        authorizer = {
            "principalId": policy["principalId"],
            **policy["context"],
            "integrationLatency": 12,
        }
        response = connect.handler(
            self.events.connect(connection_id, headers=headers, authorizer=authorizer),
            FakeLambdaContext(),
        )
        assert response["statusCode"] == 200
        self._principals[connection_id] = authorizer
        return connection_id

    def send_raw(self, connection_id: str, body: str | bytes, route_key: str = "$default") -> Any:
        event = self.events.message(
            connection_id, body, self._principals.get(connection_id), route_key
        )
        response = router.handler(event, FakeLambdaContext())
        assert response["statusCode"] == 200
        return json.loads(response["body"])

    def send(self, connection_id: str, frame: dict[str, Any]) -> Any:
        return self.send_raw(connection_id, json.dumps(frame), frame.get("action", "$default"))

    def disconnect(self, connection_id: str) -> dict[str, Any]:
        return disconnect.handler(
            self.events.disconnect(connection_id, self._principals.get(connection_id)),
            FakeLambdaContext(),
        )

    def receive_messages(self) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
        )
        return list(response.get("Messages", []))

    def drain(
        self, receive_count: int | None = None, context: FakeLambdaContext | None = None
    ) -> dict[str, Any]:
        """Hand every queued message to the processor as one batch, as Lambda's poller does."""
        messages = self.receive_messages()
        batch = [
            {
                "body": m["Body"],
                "receive_count": receive_count or int(m["Attributes"]["ApproximateReceiveCount"]),
                "message_attributes": m.get("MessageAttributes"),
                "message_id": m["MessageId"],
            }
            for m in messages
        ]
        return self.process(batch, context)

    def process(
        self, batch: Sequence[dict[str, Any]], context: FakeLambdaContext | None = None
    ) -> dict[str, Any]:
        return processor.handler(self.events.sqs(batch), context or FakeLambdaContext())

    def frames(self, connection_id: str, type_: str | None = None) -> list[dict[str, Any]]:
        return self.sender.frames(connection_id, type_)

    def context(self, remaining_ms: int = 300_000) -> FakeLambdaContext:
        return FakeLambdaContext(remaining_ms)

    def reconfigure(
        self, *, sender: Any = None, sqs: Any = None, app: Streamer | None = None, **changes: Any
    ) -> Runtime:
        """Swap in a runtime with changed settings (or sender, queue client, app), same tables."""
        old = self.runtime
        if app is not None:
            self.app = app
        runtime = Runtime(
            dataclasses.replace(old.settings, **changes),
            dynamodb=old.dynamodb,
            storage=old.storage,
            sqs=sqs if sqs is not None else old.sqs,
            sender=sender if sender is not None else self.sender,
            app=self.app,
            clock=self.clock,
            schedule=self.scheduler,
        )
        self.runtime = runtime
        set_runtime(runtime)
        return runtime

    def request_key(self, request_id: str, sub: str = "alice", tenant: str = "acme") -> Any:
        from streamer_core.storage import RequestKey

        return RequestKey(tenant, sub, request_id)


@pytest.fixture(scope="session")
def key_pair() -> tuple[str, str]:
    return generate_key_pair("ES256")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def aws_clients() -> Iterator[dict[str, Any]]:
    """One moto backend and one pair of clients per module: creating clients is slow.

    Module scope, not session: the in-process mock must not outlive these tests and catch
    the calls of other suites (the end-to-end ones talk to a moto server over HTTP).
    """
    with moto_clients("dynamodb", "sqs") as clients:
        yield clients


_envs = itertools.count(1)


@pytest.fixture
def aws(aws_clients: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Fresh tables and queue for each test, under a unique environment name."""
    env = f"t{next(_envs)}"
    dynamodb, sqs = aws_clients["dynamodb"], aws_clients["sqs"]
    with fresh_tables_and_queue(dynamodb, sqs, env, monkeypatch) as queue_url:
        monkeypatch.setenv("STREAMER_DEMO_DELAY", "0")
        yield {"dynamodb": dynamodb, "sqs": sqs, "queue_url": queue_url, "env": env}


@pytest.fixture
def settings(aws: dict[str, Any], key_pair: tuple[str, str]) -> Settings:
    return Settings(
        env=aws["env"],
        queue_url=aws["queue_url"],
        management_endpoint=f"https://{DOMAIN}/{STAGE}",
        jwt_public_key=key_pair[1],
        allowed_tenants=frozenset({"acme", "globex"}),
        rate_limit=100,
        max_receive_count=3,
    )


@pytest.fixture
def stack(
    aws: dict[str, Any], settings: Settings, key_pair: tuple[str, str], clock: FakeClock
) -> Iterator[Stack]:
    sender = RecordingSender()
    scheduler = ManualScheduler()
    app = build_app()
    runtime = Runtime(
        settings,
        dynamodb=aws["dynamodb"],
        sqs=aws["sqs"],
        sender=sender,
        app=app,
        clock=clock,
        schedule=scheduler,
    )
    from streamer_handlers.deployment import ConnectionPruner

    sender.on_gone = ConnectionPruner(runtime.storage)
    set_runtime(runtime)
    _hooks.clear()
    try:
        yield Stack(
            runtime=runtime,
            events=Events(clock),
            sender=sender,
            issuer=TokenIssuer(key_pair[0], algorithm="ES256"),
            sqs=aws["sqs"],
            queue_url=aws["queue_url"],
            clock=clock,
            scheduler=scheduler,
            app=app,
            hooks=_hooks,
        )
    finally:
        app.gate.set()  # type: ignore[attr-defined]
        reset_runtime()


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The handlers' JSON log lines written during the test, parsed."""
    from streamer_handlers._lambda.observability import logger

    buffer = io.StringIO()
    previous = logger.registered_handler.setStream(buffer)
    try:
        yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines() if line]
    finally:
        logger.registered_handler.setStream(previous)
