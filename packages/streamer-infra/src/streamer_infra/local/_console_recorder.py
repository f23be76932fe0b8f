"""What the console shows, recorded as it happens: invocations with their log lines,
connections, refused handshakes, jobs and topics.

Nothing is polled. The gateway reports sockets and frames (it calls the `Recorder` as its
observer), `RecordingInvoker` wraps whichever invoker runs the functions and reports every
invocation, and log lines reach the invocation that wrote them: from the logging module
for functions on threads of this process (a handler that knows which invocation runs on
the current thread), from the worker's stderr for functions run from the archive
(`processes.worker_output`). Changes are batched and pushed to every open event stream;
what is pushed passes `redact_tokens`, as the functions' own logs do.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from streamer_core.auth import redact_tokens

from streamer_infra.local._invoker import Handler, Invocation, Invoker, LocalFunction
from streamer_infra.local._processes import worker_output

if TYPE_CHECKING:
    from streamer_infra.local._events import ClientFacts
    from streamer_infra.local._gateway import LiveConnection

__all__ = [
    "ConnectionLookup",
    "InvocationRecord",
    "Recorder",
    "RecordingInvoker",
    "TopicCount",
    "TopicSource",
]

logger = logging.getLogger("streamer.local.console")

HANDLER_LOGGER = "streamer"
"""The logger the functions write to (Powertools' Logger is named after the service), and
the parent of the local stack's own `streamer.local.*` loggers."""

MAX_INVOCATIONS = 300
MAX_JOBS = 100
MAX_CLOSED_CONNECTIONS = 20
MAX_REFUSED = 20
MAX_LOG_LINES = 200
MAX_LINE_CHARS = 4000
MAX_DETAIL_CHARS = 16_000
MAX_REQUEST_IDS = 2000
"""Bounds on what is kept: the console is a window on recent activity, not a log store."""

FLUSH_DELAY = 0.1
"""Changes within this many seconds go out as one update: a job's burst of progress or a
publish to many subscribers is one message per stream, not one per frame."""

SUBSCRIBER_BACKLOG = 500
"""Updates a slow stream may fall behind by before it is dropped; the browser's EventSource
reconnects by itself and starts again from a snapshot."""

_HIDDEN_LOG_KEYS = frozenset(
    {
        "level",
        "message",
        "timestamp",
        "service",
        "location",
        "sampling_rate",
        "xray_trace_id",
        "correlation_id",
        "connection_id",
        "cold_start",
        "function_name",
        "function_memory_size",
        "function_arn",
        "function_request_id",
        "gateway_request_id",
        "exception_name",
        "stack_trace",
    }
)
"""Keys every line of a function carries, or that the invocation already shows."""

_STATUS_OF_ERROR_CODE = {"REQUEST_CANCELLED": "CANCELLED"}
_ERROR_LEVELS = frozenset({"ERROR", "CRITICAL"})
_REFUSAL_STATUS = {"Unauthorized": 401}
"""What an authorizer's documented refusals make the gateway answer (see `authorizer`)."""

TopicCount = dict[str, Any]
TopicSource = Callable[[], list[TopicCount]]
"""Reads the subscriptions as the console lists them (blocking: run on a thread)."""
ConnectionLookup = Callable[[str], tuple[str, str, list[str]] | None]
"""The user, tenant and permissions `$connect` stored for a connection (blocking)."""

_thread_invocation = threading.local()
_current_invocation: contextvars.ContextVar[InvocationRecord | None] = contextvars.ContextVar(
    "console_invocation", default=None
)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit} more)"


def _as_json(value: Any, limit: int = MAX_DETAIL_CHARS) -> str:
    try:
        text = json.dumps(value, default=str, indent=2)
    except (TypeError, ValueError):
        text = repr(value)
    return _clip(text, limit)


def _parse_log(line: str) -> dict[str, Any]:
    """One log line as the console shows it: level, message and the keys worth reading."""
    line = _clip(line.rstrip("\r\n"), MAX_LINE_CHARS)
    entry: dict[str, Any] = {"at": _now_ms(), "level": "", "text": line}
    if line.startswith("{"):
        try:
            parsed = json.loads(line)
        except ValueError:
            return entry
        if isinstance(parsed, dict):
            entry["level"] = str(parsed.get("level") or "")
            entry["text"] = str(parsed.get("message", ""))
            extra = {k: v for k, v in parsed.items() if k not in _HIDDEN_LOG_KEYS}
            if extra:
                entry["extra"] = extra
    return entry


@dataclass(eq=False)
class InvocationRecord:
    """One invocation of one function, from its event to its outcome."""

    id: int
    function: str
    route: str
    started_at: int
    started: float
    event_json: str
    owner: object = field(default=None, repr=False)
    """The recorder that keeps it: a line is attributed by that recorder's handler only."""
    kind: str = ""
    """"authorizer" for the `$connect` authorizer, "queue" for an SQS batch, else ""."""
    action: str | None = None
    request_ids: tuple[str, ...] = ()
    """The frames this invocation served (the router's frame id, a batch's request ids)."""
    connection_id: str | None = None
    gateway_request_id: str | None = None
    duration_ms: float | None = None
    outcome: str = "running"
    """"running", "ok", "error" (the invocation failed) or "refused" (`$connect` answered a
    status that refuses the connection)."""
    status: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    result_json: str | None = None
    logs: list[dict[str, Any]] = field(default_factory=list)
    logs_dropped: int = 0
    errors_logged: int = 0
    """Lines at ERROR or above: a function that catches its own failure (the router turns
    an action's exception into an error frame) still failed, and must stand out."""
    reply_error: dict[str, str] | None = None
    """The error frame that answered the frame this invocation served, if one did."""

    def view(self, *, detail: bool = False) -> dict[str, Any]:
        view: dict[str, Any] = {
            "id": self.id,
            "function": self.function,
            "route": self.route,
            "kind": self.kind,
            "action": self.action,
            "request_ids": list(self.request_ids),
            "connection_id": self.connection_id,
            "started_at": self.started_at,
            "duration_ms": self.duration_ms,
            "outcome": self.outcome,
            "status": self.status,
            "error": (
                {"type": self.error_type, "message": self.error_message}
                if self.error_type is not None
                else None
            ),
            "logs": list(self.logs),
            "logs_dropped": self.logs_dropped,
            "errors_logged": self.errors_logged,
            "reply_error": self.reply_error,
        }
        if detail:
            view["event"] = self.event_json
            view["result"] = self.result_json
        return view


@dataclass(eq=False)
class _ConnectionRecord:
    connection_id: str
    opened_at: int
    source_ip: str
    user_agent: str | None
    live: LiveConnection | None
    user: str | None = None
    tenant: str | None = None
    permissions: list[str] = field(default_factory=list)
    messages_in: int = 0
    messages_out: int = 0
    closed_at: int | None = None
    close_code: int | None = None
    close_reason: str | None = None

    def view(self) -> dict[str, Any]:
        live = self.live
        if live is not None:
            self.messages_in, self.messages_out = live.messages_in, live.messages_out
        return {
            "id": self.connection_id,
            "user": self.user,
            "tenant": self.tenant,
            "permissions": self.permissions,
            "opened_at": self.opened_at,
            "source_ip": self.source_ip,
            "user_agent": self.user_agent,
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "closed_at": self.closed_at,
            "close_code": self.close_code,
            "close_reason": self.close_reason,
        }


@dataclass(eq=False)
class _JobRecord:
    key: str
    request_id: str
    tenant: str | None
    user: str | None
    created_at: int
    action: str | None = None
    status: str = "QUEUED"
    percentage: float = 0.0
    message: str | None = None
    seq: int = 0
    result_json: str | None = None
    error: dict[str, Any] | None = None
    updated_at: int = 0
    finished_at: int | None = None
    connections: list[str] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "request_id": self.request_id,
            "action": self.action,
            "tenant": self.tenant,
            "user": self.user,
            "status": self.status,
            "percentage": self.percentage,
            "message": self.message,
            "seq": self.seq,
            "result": self.result_json,
            "error": self.error,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "finished_at": self.finished_at,
            "connections": list(self.connections),
        }


class _Stream:
    """One open event stream: the updates it has yet to write."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(SUBSCRIBER_BACKLOG)


def _describe(event: Mapping[str, Any]) -> dict[str, Any]:
    """Route, action and ids of an event, read the way the function will read it."""
    context = event.get("requestContext")
    context = context if isinstance(context, Mapping) else {}
    facts: dict[str, Any] = {
        "route": str(context.get("routeKey") or ""),
        "kind": "",
        "action": None,
        "request_ids": (),
        "connection_id": context.get("connectionId"),
        "gateway_request_id": context.get("requestId"),
    }
    if event.get("type") == "REQUEST" and "methodArn" in event:
        facts["kind"] = "authorizer"
    records = event.get("Records")
    if isinstance(records, list):
        facts["kind"] = "queue"
        facts["route"] = f"SQS batch of {len(records)}"
        ids: list[str] = []
        for record in records:
            body = record.get("body") if isinstance(record, Mapping) else None
            with contextlib.suppress(ValueError, TypeError):
                parsed = json.loads(body) if isinstance(body, str) else None
                if isinstance(parsed, dict) and isinstance(parsed.get("request_id"), str):
                    ids.append(parsed["request_id"])
        facts["request_ids"] = tuple(ids)
    body = event.get("body")
    if isinstance(body, str) and body.startswith("{"):
        with contextlib.suppress(ValueError):
            parsed = json.loads(body)
            if isinstance(parsed, dict):
                if isinstance(parsed.get("action"), str):
                    facts["action"] = parsed["action"]
                if isinstance(parsed.get("id"), str):
                    facts["request_ids"] = (parsed["id"],)
    return facts


class Recorder:
    """The console's state, fed by the gateway, the invoker and the logs.

    Invocations start and end on the event loop, but a function on a worker thread logs
    from that thread, so the state is guarded by one lock and every change schedules a
    flush on the loop.
    """

    def __init__(
        self,
        *,
        topics: TopicSource | None = None,
        lookup: ConnectionLookup | None = None,
    ) -> None:
        self._topic_source = topics
        self._lookup = lookup
        # Reentrant: a line logged while the state is being changed comes back here.
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_id = 0
        self.invocations: OrderedDict[int, InvocationRecord] = OrderedDict()
        self._connections: OrderedDict[str, _ConnectionRecord] = OrderedDict()
        self._jobs: OrderedDict[str, _JobRecord] = OrderedDict()
        self._served_by: OrderedDict[str, int] = OrderedDict()
        """Frame id to the invocation that served it, to pin an error reply on it."""
        self._refused: deque[dict[str, Any]] = deque(maxlen=MAX_REFUSED)
        self._topics: list[TopicCount] = []
        self._dirty: dict[str, set[Any]] = {
            "invocations": set(),
            "connections": set(),
            "jobs": set(),
        }
        self._dirty_refused = False
        self._dirty_topics = False
        self._flush_pending = False
        self._streams: set[_Stream] = set()
        self._topics_task: asyncio.Task[None] | None = None
        self._topics_again = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._log_handler: _InvocationLogHandler | None = None

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Begin recording on the running loop: install the log handler, read the topics."""
        self._loop = asyncio.get_running_loop()
        self._log_handler = _InvocationLogHandler(self)
        logging.getLogger(HANDLER_LOGGER).addHandler(self._log_handler)
        self.refresh_topics()

    async def close(self) -> None:
        """Stop recording and end every open stream."""
        if self._log_handler is not None:
            logging.getLogger(HANDLER_LOGGER).removeHandler(self._log_handler)
            self._log_handler = None
        for stream in list(self._streams):
            self._end_stream(stream)
        self._streams.clear()
        tasks = [task for task in (self._topics_task, *self._tasks) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop = None

    # -- streams ------------------------------------------------------------------------
    def open_stream(self) -> tuple[_Stream, str]:
        """A new stream and the snapshot it starts from (both taken at one moment)."""
        stream = _Stream()
        with self._lock:
            snapshot = self._encode(self._snapshot_locked())
            self._streams.add(stream)
        return stream, snapshot

    def close_stream(self, stream: _Stream) -> None:
        self._streams.discard(stream)

    def _end_stream(self, stream: _Stream) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            stream.queue.put_nowait(None)
            return
        # A full queue: make room for the end marker, the stream is going away anyway.
        with contextlib.suppress(asyncio.QueueEmpty):
            stream.queue.get_nowait()
        with contextlib.suppress(asyncio.QueueFull):
            stream.queue.put_nowait(None)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self._snapshot_locked()

    def _snapshot_locked(self) -> dict[str, Any]:
        return {
            "invocations": [record.view() for record in self.invocations.values()],
            "connections": [record.view() for record in self._connections.values()],
            "jobs": [record.view() for record in self._jobs.values()],
            "refused": list(self._refused),
            "topics": list(self._topics),
        }

    def invocation_detail(self, invocation_id: int) -> dict[str, Any] | None:
        with self._lock:
            record = self.invocations.get(invocation_id)
            return None if record is None else record.view(detail=True)

    @staticmethod
    def _encode(value: Any) -> str:
        return redact_tokens(json.dumps(value, default=str, separators=(",", ":")))

    def _changed(self, kind: str, key: Any) -> None:
        """Mark one item for the next update; the caller holds the lock."""
        self._dirty[kind].add(key)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        loop = self._loop
        if self._flush_pending or loop is None:
            return
        self._flush_pending = True
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            # A context of its own: not the invocation's whose change scheduled it.
            loop.call_soon_threadsafe(self._arm_flush, context=contextvars.Context())

    def _arm_flush(self) -> None:
        if self._loop is not None:
            self._loop.call_later(FLUSH_DELAY, self._flush)

    def _flush(self) -> None:
        with self._lock:
            self._flush_pending = False
            update: dict[str, Any] = {}
            dirty = self._dirty
            if dirty["invocations"]:
                update["invocations"] = [
                    self.invocations[key].view()
                    for key in sorted(dirty["invocations"])
                    if key in self.invocations
                ]
            if dirty["connections"]:
                update["connections"] = [
                    self._connections[key].view()
                    for key in dirty["connections"]
                    if key in self._connections
                ]
            if dirty["jobs"]:
                update["jobs"] = [
                    self._jobs[key].view() for key in dirty["jobs"] if key in self._jobs
                ]
            if self._dirty_refused:
                update["refused"] = list(self._refused)
            if self._dirty_topics:
                update["topics"] = list(self._topics)
            for keys in dirty.values():
                keys.clear()
            self._dirty_refused = self._dirty_topics = False
            streams = list(self._streams)
        if not update or not streams:
            return
        message = self._encode(update)
        for stream in streams:
            try:
                stream.queue.put_nowait(message)
            except asyncio.QueueFull:
                logger.warning("a console stream fell behind and was dropped")
                self._streams.discard(stream)
                self._end_stream(stream)

    # -- invocations --------------------------------------------------------------------
    def invocation_started(self, function: str, event: Mapping[str, Any]) -> InvocationRecord:
        facts = _describe(event)
        event_json = _as_json(event)
        with self._lock:
            self._next_id += 1
            record = InvocationRecord(
                id=self._next_id,
                function=function,
                route=facts["route"],
                kind=facts["kind"],
                action=facts["action"],
                request_ids=facts["request_ids"],
                connection_id=facts["connection_id"],
                gateway_request_id=facts["gateway_request_id"],
                started_at=_now_ms(),
                started=time.monotonic(),
                event_json=event_json,
                owner=self,
            )
            self.invocations[record.id] = record
            while len(self.invocations) > MAX_INVOCATIONS:
                self.invocations.popitem(last=False)
            if record.kind == "":
                for request_id in record.request_ids:
                    self._served_by[request_id] = record.id
                while len(self._served_by) > MAX_REQUEST_IDS:
                    self._served_by.popitem(last=False)
            self._changed("invocations", record.id)
        return record

    def invocation_finished(
        self,
        record: InvocationRecord,
        invocation: Invocation | None,
        error: str | None = None,
        *,
        expected_errors: Collection[str] = (),
    ) -> None:
        finished = time.monotonic()
        result_json = None if invocation is None else _as_json(invocation.result)
        with self._lock:
            record.duration_ms = round((finished - record.started) * 1000, 1)
            if invocation is None:
                record.outcome = "error"
                record.error_type = "Cancelled"
                record.error_message = error or "the invocation was cancelled"
            elif not invocation.ok:
                record.outcome = "error"
                record.error_type = invocation.error_type
                record.error_message = invocation.error_message
                if invocation.error_message in expected_errors:
                    # Part of the function's contract (an authorizer's "Unauthorized").
                    record.outcome = "refused"
                    record.status = _REFUSAL_STATUS.get(invocation.error_message or "")
            else:
                record.outcome = "ok"
                record.result_json = result_json
                result = invocation.result
                if isinstance(result, dict) and isinstance(result.get("statusCode"), int):
                    record.status = result["statusCode"]
                    if not 200 <= record.status < 300:
                        record.outcome = "refused"
            self._changed("invocations", record.id)
        if record.route == "$disconnect":
            # The function has removed the connection's subscriptions.
            self.refresh_topics()

    def log_line(self, record: InvocationRecord, line: str) -> None:
        """Attribute one log line to `record`; callable from any thread."""
        if not line.strip():
            return
        entry = _parse_log(line)
        with self._lock:
            if entry["level"] in _ERROR_LEVELS:
                record.errors_logged += 1
            if len(record.logs) >= MAX_LOG_LINES:
                record.logs_dropped += 1
            else:
                record.logs.append(entry)
            self._changed("invocations", record.id)

    # -- the gateway's observer ---------------------------------------------------------
    def connected(self, conn: LiveConnection) -> None:
        facts = conn.facts
        context = facts.authorizer or {}
        record = _ConnectionRecord(
            connection_id=conn.connection_id,
            opened_at=facts.connected_at,
            source_ip=facts.source_ip,
            user_agent=facts.user_agent,
            live=conn,
        )
        user, tenant = context.get("userId"), context.get("tenantId")
        if isinstance(user, str) and isinstance(tenant, str):
            record.user, record.tenant = user, tenant
            permissions = context.get("permissions")
            record.permissions = permissions.split() if isinstance(permissions, str) else []
        elif self._lookup is not None:
            self._spawn(self._look_up(record))
        with self._lock:
            self._connections[record.connection_id] = record
            self._changed("connections", record.connection_id)

    async def _look_up(self, record: _ConnectionRecord) -> None:
        """No authorizer context (a stack without an authorizer): ask the table instead."""
        assert self._lookup is not None
        try:
            found = await asyncio.to_thread(self._lookup, record.connection_id)
        except Exception:
            logger.warning("could not read connection %s", record.connection_id, exc_info=True)
            return
        if found is None:
            return
        with self._lock:
            record.user, record.tenant, record.permissions = found[0], found[1], list(found[2])
            self._changed("connections", record.connection_id)

    def disconnected(self, conn: LiveConnection, code: int, reason: str) -> None:
        with self._lock:
            record = self._connections.get(conn.connection_id)
            if record is None:
                return
            record.view()  # keeps the final counts
            record.live = None
            record.closed_at = _now_ms()
            record.close_code, record.close_reason = code, reason
            # Closed ones move to the end, and only the last few stay.
            self._connections.move_to_end(record.connection_id)
            closed = [c for c in self._connections.values() if c.closed_at is not None]
            for old in closed[:-MAX_CLOSED_CONNECTIONS]:
                del self._connections[old.connection_id]
            self._changed("connections", record.connection_id)

    def refused(self, facts: ClientFacts, request_id: str, status: int) -> None:
        with self._lock:
            reason, invocation_id = self._refusal_reason(request_id)
            try:
                phrase = HTTPStatus(status).phrase
            except ValueError:
                phrase = "Error"
            self._refused.appendleft(
                {
                    "at": _now_ms(),
                    "status": status,
                    "message": phrase,
                    "reason": reason,
                    "invocation_id": invocation_id,
                    "source_ip": facts.source_ip,
                    "user_agent": facts.user_agent,
                    "request_id": request_id,
                }
            )
            self._dirty_refused = True
            self._schedule_flush()

    def _refusal_reason(self, request_id: str) -> tuple[str | None, int | None]:
        """Why `$connect` refused, as its own log lines say; the lock is held."""
        reason: str | None = None
        found: int | None = None
        for record in reversed(self.invocations.values()):
            if record.gateway_request_id != request_id:
                continue
            found = found or record.id
            for entry in record.logs:
                extra = entry.get("extra") or {}
                if isinstance(extra.get("reason"), str):
                    return extra["reason"], record.id
            if reason is None and record.error_message:
                reason = record.error_message
        return reason, found

    def received(self, conn: LiveConnection, data: str | bytes) -> None:
        with self._lock:
            if conn.connection_id in self._connections:
                self._changed("connections", conn.connection_id)

    def sent(self, conn: LiveConnection, data: str | bytes) -> None:
        with self._lock:
            if conn.connection_id in self._connections:
                self._changed("connections", conn.connection_id)
        # Only frames about a request or a subscription carry a request id: an event fanned
        # out to many subscribers is never parsed here.
        if isinstance(data, bytes) or '"request_id"' not in data:
            return
        try:
            frame = json.loads(data)
        except ValueError:
            return
        if not isinstance(frame, dict):
            return
        kind = frame.get("type")
        if kind in ("subscribed", "unsubscribed"):
            self.refresh_topics()
        elif kind in ("acknowledgment", "progress", "complete", "error", "status"):
            self._job_frame(conn, kind, frame)

    def _job_frame(self, conn: LiveConnection, kind: str, frame: dict[str, Any]) -> None:
        request_id = frame.get("request_id")
        if not isinstance(request_id, str):
            return
        with self._lock:
            owner = self._connections.get(conn.connection_id)
            tenant = owner.tenant if owner is not None else None
            user = owner.user if owner is not None else None
            key = f"{tenant or ''}/{request_id}"
            job = self._jobs.get(key)
            if job is None and kind == "error":
                self._error_reply(request_id, frame)
                return
            if job is None:
                if kind == "complete":
                    return  # a job from before the console
                if kind == "status" and not isinstance(frame.get("snapshot"), dict):
                    return
                job = _JobRecord(key, request_id, tenant, user, created_at=_now_ms())
                self._jobs[key] = job
                while len(self._jobs) > MAX_JOBS:
                    self._jobs.popitem(last=False)
            if conn.connection_id not in job.connections:
                job.connections.append(conn.connection_id)
            _apply_job_frame(job, kind, frame)
            job.updated_at = _now_ms()
            self._changed("jobs", key)

    def _error_reply(self, request_id: str, frame: Mapping[str, Any]) -> None:
        """A frame refused or failed at once: shown on the invocation that answered it."""
        found = self.invocations.get(self._served_by.get(request_id, -1))
        if found is None or found.reply_error is not None:
            return
        found.reply_error = {
            "code": str(frame.get("code") or "ERROR"),
            "message": str(frame.get("message") or ""),
        }
        self._changed("invocations", found.id)

    # -- topics -------------------------------------------------------------------------
    def refresh_topics(self) -> None:
        """Read the subscriptions again, once at a time; a request meanwhile runs after."""
        loop = self._loop
        if self._topic_source is None or loop is None:
            return
        if not self._on_loop():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.refresh_topics, context=contextvars.Context())
            return
        if self._topics_task is not None and not self._topics_task.done():
            self._topics_again = True
            return
        self._topics_task = loop.create_task(self._read_topics(), context=contextvars.Context())

    def _on_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    async def _read_topics(self) -> None:
        assert self._topic_source is not None
        while True:
            self._topics_again = False
            try:
                topics = await asyncio.to_thread(self._topic_source)
            except Exception:
                logger.warning("could not read the subscriptions", exc_info=True)
                topics = None
            if topics is not None:
                with self._lock:
                    if topics != self._topics:
                        self._topics = topics
                        self._dirty_topics = True
                        self._schedule_flush()
            if not self._topics_again:
                return

    def _spawn(self, coro: Any) -> None:
        if self._loop is None:
            coro.close()
            return
        task = self._loop.create_task(coro, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _apply_job_frame(job: _JobRecord, kind: str, frame: Mapping[str, Any]) -> None:
    """What one frame of a job tells; frames arriving late or twice change nothing."""
    if kind == "acknowledgment":
        if isinstance(frame.get("action"), str):
            job.action = frame["action"]
        if job.status == "QUEUED" and isinstance(frame.get("status"), str):
            job.status = frame["status"]
        return
    if kind == "progress":
        seq = frame.get("seq")
        if isinstance(seq, int) and seq <= job.seq:
            return
        job.seq = seq if isinstance(seq, int) else job.seq
        percentage = frame.get("percentage")
        if isinstance(percentage, int | float):
            job.percentage = float(percentage)
        message = frame.get("message")
        job.message = message if isinstance(message, str) else job.message
        if job.finished_at is None:
            job.status = "PROCESSING"
        return
    if kind == "complete":
        job.status = "COMPLETED"
        job.percentage = 100.0
        job.result_json = _as_json(frame.get("result"), 2000)
        job.finished_at = job.finished_at or _now_ms()
        return
    if kind == "error":
        code = str(frame.get("code") or "ERROR")
        job.status = _STATUS_OF_ERROR_CODE.get(code, "FAILED")
        job.error = {"code": code, "message": str(frame.get("message") or "")}
        job.finished_at = job.finished_at or _now_ms()
        return
    snapshot = frame.get("snapshot")
    if kind == "status" and isinstance(snapshot, Mapping):
        if isinstance(snapshot.get("action"), str):
            job.action = snapshot["action"]
        status = snapshot.get("status")
        if isinstance(status, str):
            job.status = status
        progress = snapshot.get("progress")
        if isinstance(progress, Mapping):
            _apply_job_frame(job, "progress", progress)
            if isinstance(status, str):
                job.status = status
        if status == "COMPLETED":
            _apply_job_frame(job, "complete", {"result": snapshot.get("result")})
        error = snapshot.get("error")
        if isinstance(error, Mapping):
            _apply_job_frame(job, "error", error)
            if isinstance(status, str):
                job.status = status


class _InvocationLogHandler(logging.Handler):
    """Gives a log record to the invocation it belongs to, formatted as it is printed.

    A function on a worker thread logs from that thread (`RecordingInvoker` marks it); the
    invoker's own lines about an invocation (a timeout, a failure) are written on the event
    loop, in the context of the call that awaits it.
    """

    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self._recorder = recorder
        self._fallback = logging.Formatter("%(levelname)s %(name)s: %(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(logger.name):
            return  # the console's own troubles belong to no invocation
        target: InvocationRecord | None = getattr(_thread_invocation, "record", None)
        if target is None:
            target = _current_invocation.get()
        if target is None or target.owner is not self._recorder:
            return
        try:
            line = self._formatter_for().format(record)
        except Exception:
            line = record.getMessage()
        self._recorder.log_line(target, line)

    def _formatter_for(self) -> logging.Formatter:
        # The functions' own handler's formatter (Powertools' JSON), so that the console
        # shows the line exactly as the terminal does.
        for handler in logging.getLogger(HANDLER_LOGGER).handlers:
            if handler is not self and handler.formatter is not None:
                return handler.formatter
        return self._fallback


def _on_this_thread(handler: Handler, record: InvocationRecord) -> Handler:
    """`handler`, telling the log handler which invocation runs on the calling thread.

    The mark stays after the handler returns: the invoker's own lines about the outcome (a
    failure's traceback) are written on the same thread right after, and the thread's next
    invocation replaces it.
    """

    def run(event: dict[str, Any], context: Any) -> Any:
        _thread_invocation.record = record
        return handler(event, context)

    return run


class RecordingInvoker:
    """An `Invoker` that records every invocation of the one it wraps, either kind."""

    def __init__(self, inner: Invoker, recorder: Recorder) -> None:
        self.inner = inner
        self._recorder = recorder

    async def invoke(
        self,
        function: LocalFunction,
        event: dict[str, Any],
        *,
        expected_errors: Collection[str] = (),
        fresh: bool = False,
    ) -> Invocation:
        recorder = self._recorder
        record = recorder.invocation_started(function.name, event)
        marked = replace(function, handler=_on_this_thread(function.handler, record))
        invocation_token = _current_invocation.set(record)
        output_token = worker_output.set(partial(recorder.log_line, record))
        try:
            invocation = await self.inner.invoke(
                marked, event, expected_errors=expected_errors, fresh=fresh
            )
        except BaseException as exc:
            recorder.invocation_finished(record, None, type(exc).__name__)
            raise
        finally:
            worker_output.reset(output_token)
            _current_invocation.reset(invocation_token)
        recorder.invocation_finished(record, invocation, expected_errors=expected_errors)
        return invocation

    def shutdown(self) -> None:
        self.inner.shutdown()


def topic_counts(items: Iterable[Mapping[str, Any]], now: float) -> list[TopicCount]:
    """Subscriptions grouped by tenant and topic, expired ones left out (moto keeps them)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for item in items:
        expires = item.get("expires_at")
        if isinstance(expires, int | float) and expires <= now:
            continue
        tenant, topic = item.get("tenant_id"), item.get("topic")
        if not isinstance(tenant, str) or not isinstance(topic, str):
            continue
        groups.setdefault((tenant, topic), []).append(str(item.get("connection_id", "")))
    return [
        {"tenant": tenant, "topic": topic, "subscribers": len(ids), "connections": sorted(ids)}
        for (tenant, topic), ids in sorted(groups.items())
    ]
