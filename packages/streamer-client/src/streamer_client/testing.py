"""An in-memory Streamer server that speaks the protocol, for testing code built on the client.

Code that uses :class:`~streamer_client.StreamerClient` should be testable without sockets, a
local stack or a scripted WebSocket server. :class:`MockServer` plugs into the client's one
connect seam, the way httpx's ``MockTransport`` replaces its network transport::

    from streamer_client import StreamerClient
    from streamer_client.testing import MockServer, Progress

    server = MockServer()
    server.reply("echo", lambda request: request.payload)
    server.job("generate_report", progress=[50, Progress(100, "done")], result={"rows": 3})

    async with StreamerClient("ws://test", token="t", connect=server.connect) as client:
        assert await client.request("echo", {"x": 1}) == {"x": 1}

Every frame crosses as JSON text and is read by the protocol's own parsers on both sides, so a
frame the real server would refuse is refused here with the same ``VALIDATION_ERROR``, and the
client reads exactly what it would read from the wire. The server answers the built-in actions
as the real one does: ``ping``; ``subscribe``/``unsubscribe``; ``status`` (which also makes the
asking connection follow a running job, as after a reconnect); ``cancel`` (a queued job ends
at once, a running one at its next report). Asynchronous requests are idempotent by request id.

What it does not reproduce: tenants (one server is one user of one tenant), the rate limit,
the per-connection subscription limit, coalescing of progress reports (every scripted report
is sent), API Gateway's idle timeout and 2-hour connection lifetime, and any real timing:
frames are delivered in the order they are produced, without delay.

The server may be driven from another thread than the client's (the blocking client runs its
loop in a thread of its own): every method takes a lock and hands frames to the client's loop.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from streamer_core import (
    ACTION_PATTERN,
    BUILTIN_ACTIONS,
    TERMINAL_STATUSES,
    TOPIC_PATTERN,
    AcknowledgmentFrame,
    ClientFrame,
    CompleteFrame,
    ErrorCode,
    ErrorFrame,
    ErrorInfo,
    EventFrame,
    FrameTooLargeError,
    PongFrame,
    ProgressFrame,
    ProgressState,
    ProtocolError,
    RequestRefPayload,
    RequestSnapshot,
    RequestStatus,
    ResponseFrame,
    StatusFrame,
    SubscribedFrame,
    TopicPayload,
    UnsubscribedFrame,
    builtin_payload,
    encode,
    parse_client_frame,
)
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.http11 import Response
from websockets.protocol import State

from streamer_client._connection import ClientSocket

__all__ = [
    "ErrorReply",
    "Handshake",
    "MockConnection",
    "MockJob",
    "MockRequest",
    "MockServer",
    "Progress",
]

logger = logging.getLogger("streamer_client.testing")

T = TypeVar("T")

_ACTION = re.compile(ACTION_PATTERN)
_TOPIC = re.compile(TOPIC_PATTERN)
_INTERNAL_MESSAGE = "internal error"
"""What the real server tells a client about a crash: nothing."""
DEFAULT_WAIT = 10.0
"""How long :meth:`MockServer.wait_for` waits before it fails: a guard against a hung test."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class ErrorReply(Exception):
    """An ``error`` frame a scripted action answers with; return it, pass it, or raise it.

    ``message`` defaults to the code in words, for tests that only care about the code.
    """

    def __init__(
        self,
        code: ErrorCode | str,
        message: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        self.code = ErrorCode(code)
        self.message = message if message is not None else self.code.value.lower().replace("_", " ")
        self.details: dict[str, Any] = dict(details or {})
        super().__init__(f"{self.code}: {self.message}")

    def frame(self, request_id: str | None) -> ErrorFrame:
        """The frame a client receives; details that are not JSON are left out, as on the server."""
        try:
            return ErrorFrame(
                request_id=request_id, code=self.code, message=self.message, details=self.details
            )
        except PydanticValidationError:
            return ErrorFrame(request_id=request_id, code=self.code, message=self.message)


@dataclass(frozen=True)
class Progress:
    """One scripted progress report of a job."""

    percentage: float
    message: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Handshake:
    """One connection attempt, accepted or refused."""

    uri: str
    headers: dict[str, str]
    token: str | None
    accepted: bool


@dataclass(frozen=True, eq=False)
class MockRequest:
    """A request for an application action, as a reply function receives it."""

    id: str
    action: str
    payload: dict[str, Any]
    metadata: dict[str, str]
    connection: MockConnection

    @property
    def token(self) -> str | None:
        """The token the sending connection presented, to script answers per caller."""
        return self.connection.token


Answer = Any
"""A value to answer with, an :class:`ErrorReply`, or a function of the :class:`MockRequest`
returning either (``async def`` functions too)."""


@dataclass(frozen=True)
class _Reply:
    answer: Answer


@dataclass(frozen=True)
class _JobScript:
    progress: tuple[Progress, ...]
    result: Answer
    error: ErrorReply | None
    hold: bool


class _Socket:
    """The client's end of one in-memory connection (a :class:`ClientSocket`)."""

    def __init__(self, connection: MockConnection) -> None:
        self._connection = connection
        self._loop = asyncio.get_running_loop()
        self._inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._state = State.OPEN

    @property
    def state(self) -> State:
        return self._state

    async def send(self, message: str, /) -> None:
        if self._state is not State.OPEN:
            raise ConnectionClosedError(None, None)
        self._connection._server._receive(self._connection, message)

    async def close(self) -> None:
        self._connection._server._close(self._connection)

    async def __aiter__(self) -> AsyncIterator[str]:
        while True:
            item = await self._inbox.get()
            if item is None:
                return
            yield item

    def _push(self, item: str | None) -> None:
        """Hand ``item`` to the client's loop, from its own thread or any other."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._inbox.put_nowait(item)
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._inbox.put_nowait, item)


class MockConnection:
    """The server's side of one accepted connection."""

    def __init__(self, server: MockServer, index: int, handshake: Handshake) -> None:
        self._server = server
        self.index = index
        self.handshake = handshake
        self.topics: set[str] = set()
        """Topics this connection is subscribed to."""
        self.received: list[ClientFrame] = []
        """Every frame this connection sent that parsed, in order."""
        self._socket = _Socket(self)

    def __repr__(self) -> str:
        state = "open" if self.open else "closed"
        return f"<MockConnection {self.index} {state} topics={sorted(self.topics)}>"

    @property
    def token(self) -> str | None:
        return self.handshake.token

    @property
    def open(self) -> bool:
        return self._socket.state is State.OPEN

    def drop(self) -> None:
        """Close this connection from the server's side, as a gateway or network would."""
        self._server._close(self)

    def _send(self, frame: BaseModel) -> None:
        if self.open:
            self._socket._push(encode(frame))


class MockJob:
    """An asynchronous request the server accepted; drive a held one with its methods."""

    def __init__(self, server: MockServer, request: MockRequest) -> None:
        self._server = server
        self.request = request
        self.status = RequestStatus.QUEUED
        self.progress: list[ProgressFrame] = []
        """The reports sent, in order."""
        self.result: Any = None
        self.error: ErrorInfo | None = None
        self.cancel_requested = False
        self.created_at = self.updated_at = _now_ms()
        self._followers: set[MockConnection] = set()

    def __repr__(self) -> str:
        return f"<MockJob {self.action} id={self.id} status={self.status}>"

    @property
    def id(self) -> str:
        return self.request.id

    @property
    def action(self) -> str:
        return self.request.action

    def done(self) -> bool:
        """Whether the job reached a final state."""
        return self.status in TERMINAL_STATUSES

    def report(self, percentage: float, message: str | None = None, **metadata: Any) -> None:
        """Send a progress report to the job's followers.

        After a client's ``cancel`` the job stops here instead, as a real action stops at its
        next report: it ends CANCELLED and the report is not sent.
        """
        with self._server._lock:
            self._check_running()
            if self.cancel_requested:
                self._cancel()
                return
            frame = ProgressFrame(
                request_id=self.id,
                percentage=percentage,
                message=message,
                metadata=metadata,
                seq=len(self.progress) + 1,
            )
            self.progress.append(frame)
            self._update(RequestStatus.PROCESSING)
            self._tell(frame)

    def complete(self, result: Any = None) -> None:
        """End the job with ``result``; followers get ``complete``."""
        with self._server._lock:
            self._check_running()
            try:
                frame = CompleteFrame(request_id=self.id, result=result)
                encode(frame)
            except PydanticValidationError:
                self._end_with(
                    ErrorReply(ErrorCode.INTERNAL_ERROR, "the action's result is not JSON")
                )
                return
            except FrameTooLargeError as error:
                self._end_with(
                    ErrorReply(
                        ErrorCode.INTERNAL_ERROR,
                        "the action's result is too large",
                        {"size": error.size, "limit": error.limit},
                    )
                )
                return
            self.result = result
            self._update(RequestStatus.COMPLETED)
            self._tell(frame)

    def fail(
        self,
        code: ErrorCode | str,
        message: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """End the job with an error; followers get ``error``."""
        with self._server._lock:
            self._check_running()
            self._end_with(ErrorReply(code, message, details))

    def snapshot(self) -> RequestSnapshot:
        """The job as ``status`` reports it."""
        last = self.progress[-1] if self.progress else None
        return RequestSnapshot(
            request_id=self.id,
            action=self.action,
            status=self.status,
            progress=None
            if last is None
            else ProgressState(
                percentage=last.percentage,
                message=last.message,
                metadata=last.metadata,
                seq=last.seq,
            ),
            result=self.result,
            error=self.error,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )

    def _check_running(self) -> None:
        if self.done():
            raise RuntimeError(f"job {self.id} already ended {self.status}")

    def _update(self, status: RequestStatus) -> None:
        self.status = status
        self.updated_at = _now_ms()
        self._server._changed()

    def _tell(self, frame: BaseModel) -> None:
        for connection in list(self._followers):
            connection._send(frame)

    def _end_with(self, error: ErrorReply) -> None:
        frame = error.frame(self.id)
        self.error = ErrorInfo(code=frame.code, message=frame.message, details=frame.details)
        self._update(RequestStatus.FAILED)
        self._tell(frame)

    def _cancel(self) -> None:
        self.cancel_requested = True
        self._update(RequestStatus.CANCELLED)
        self._tell(
            ErrorFrame(request_id=self.id, code=ErrorCode.CANCELLED, message="request cancelled")
        )


class MockServer:
    """A scripted Streamer server in memory; pass :meth:`connect` to the client.

    Script application actions with :meth:`reply` (synchronous) and :meth:`job` (asynchronous);
    push events with :meth:`publish`; cut connections with :meth:`drop`; refuse handshakes with
    ``tokens=``, :meth:`revoke` and :meth:`refuse_connections`. What happened is recorded in
    :attr:`connections`, :attr:`handshakes`, :attr:`received`, :attr:`requests` and
    :attr:`jobs`. An action that is not scripted is answered ``NOT_FOUND``, as an unknown
    action is.
    """

    def __init__(self, *, tokens: Iterable[str] | None = None) -> None:
        self._lock = threading.RLock()
        self._tokens = frozenset(tokens) if tokens is not None else None
        self._revoked: set[str] = set()
        self._refusing = False
        self._refusal_status: HTTPStatus | None = None
        self._scripts: dict[str, _Reply | _JobScript] = {}
        self._jobs_by_id: dict[str, MockJob] = {}
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.answer_pings = True
        """Set to False to let heartbeats go unanswered, as a server that hangs would."""
        self.connections: list[MockConnection] = []
        """Every accepted connection, in order."""
        self.handshakes: list[Handshake] = []
        """Every connection attempt, accepted or refused."""
        self.received: list[ClientFrame] = []
        """Every client frame that parsed, built-in actions included, in order."""
        self.requests: list[MockRequest] = []
        """Every request for an application action, in order."""
        self.jobs: list[MockJob] = []
        """Every asynchronous request accepted, in order."""
        self.errors: list[BaseException] = []
        """Exceptions raised by reply functions (answered as ``INTERNAL_ERROR``)."""

    # ------------------------------------------------------------------ scripting

    def reply(self, action: str, answer: Answer) -> None:
        """Answer ``action`` at once: with ``answer``, or what ``answer(request)`` returns.

        An :class:`ErrorReply` (given, returned or raised) answers ``error``; any other
        exception from a function answers ``INTERNAL_ERROR`` and is kept in :attr:`errors`.
        An ``async def`` function is awaited without holding up other frames.
        """
        self._script(action, _Reply(answer))

    def job(
        self,
        action: str,
        *,
        progress: Iterable[float | Progress] = (),
        result: Answer = None,
        error: ErrorReply | None = None,
        hold: bool = False,
    ) -> None:
        """Accept ``action`` as a job: acknowledge it, send ``progress``, then end it.

        It ends with ``error`` when given, else with ``result`` (a value, or a function of the
        request). ``hold=True`` stops after the acknowledgment instead: the job then waits in
        :attr:`jobs` for the test to call its ``report``, ``complete`` or ``fail``.
        """
        steps = tuple(step if isinstance(step, Progress) else Progress(step) for step in progress)
        self._script(action, _JobScript(steps, result, error, hold))

    def _script(self, action: str, script: _Reply | _JobScript) -> None:
        if action in BUILTIN_ACTIONS:
            raise ValueError(f"{action!r} is a built-in action; the server answers it itself")
        if not _ACTION.fullmatch(action):
            raise ValueError(f"action name {action!r} does not match {ACTION_PATTERN}")
        with self._lock:
            self._scripts[action] = script

    # ------------------------------------------------------------------ driving

    def publish(self, topic: str, data: Any = None, *, event_id: str | None = None) -> int:
        """Send an ``event`` to every open connection subscribed to ``topic``; returns how many."""
        if not _TOPIC.fullmatch(topic):
            raise ValueError(f"topic {topic!r} does not match {TOPIC_PATTERN}")
        frame = (
            EventFrame(topic=topic, data=data)
            if event_id is None
            else EventFrame(topic=topic, data=data, id=event_id)
        )
        with self._lock:
            targets = [c for c in self.connections if c.open and topic in c.topics]
            for connection in targets:
                connection._send(frame)
        return len(targets)

    def drop(self) -> int:
        """Close every open connection from the server's side; returns how many."""
        with self._lock:
            targets = self.open_connections
            for connection in targets:
                self._close(connection)
        return len(targets)

    def revoke(self, token: str) -> None:
        """Refuse ``token`` from the next handshake on (HTTP 401); open connections stay."""
        with self._lock:
            self._revoked.add(token)

    def refuse_connections(self, status: int | None = None) -> None:
        """Refuse every handshake until :meth:`accept_connections`.

        With ``status`` the handshake is answered with that HTTP status (the client gives up at
        once on 401 and 403, and retries 408, 429 and 5xx); without, the server is unreachable.
        """
        refusal = None if status is None else HTTPStatus(status)
        with self._lock:
            self._refusing, self._refusal_status = True, refusal

    def accept_connections(self) -> None:
        """Take handshakes again after :meth:`refuse_connections`."""
        with self._lock:
            self._refusing, self._refusal_status = False, None

    @property
    def open_connections(self) -> list[MockConnection]:
        with self._lock:
            return [connection for connection in self.connections if connection.open]

    @property
    def topics(self) -> set[str]:
        """Topics some open connection is subscribed to."""
        with self._lock:
            return {topic for connection in self.open_connections for topic in connection.topics}

    async def wait_for(self, predicate: Callable[[], T], timeout: float = DEFAULT_WAIT) -> T:  # noqa: ASYNC109
        """Wait until ``predicate()`` is true and return its value; checked on every change.

        For what a test cannot await directly: a reconnect (``lambda: len(server.connections)
        == 2``), a topic restored (``lambda: "news" in server.topics``), a job arriving
        (``lambda: server.jobs``). ``timeout`` only guards against a test that would hang.
        """
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while True:
                changed = asyncio.Event()
                with self._lock:
                    value = predicate()
                    if value:
                        return value
                    waiter = (loop, changed)
                    self._waiters.append(waiter)
                try:
                    await changed.wait()
                finally:
                    with self._lock:
                        self._waiters.remove(waiter)

    # ------------------------------------------------------------------ the connect seam

    async def connect(
        self,
        uri: str,
        /,
        *,
        additional_headers: Mapping[str, str] | None = None,
        open_timeout: float | None = None,
        user_agent_header: str | None = None,
    ) -> ClientSocket:
        """Open an in-memory connection; the client's ``connect=`` seam.

        Fails the way websockets' ``connect`` fails, so the client reacts as it would to a
        real server: ``InvalidStatus`` for a refused handshake, ``OSError`` when unreachable.
        """
        headers = dict(additional_headers or {})
        token = _token_of(uri, headers)
        with self._lock:
            refusal = self._refusal_status
            if not self._refusing and not self._accepts(token):
                refusal = HTTPStatus.UNAUTHORIZED
            if self._refusing or refusal is not None:
                self.handshakes.append(Handshake(uri, headers, token, accepted=False))
                self._changed()
                if refusal is None:
                    raise ConnectionRefusedError(f"cannot reach {uri} (refuse_connections)")
                raise InvalidStatus(Response(refusal.value, refusal.phrase, Headers(), b""))
            handshake = Handshake(uri, headers, token, accepted=True)
            self.handshakes.append(handshake)
            connection = MockConnection(self, len(self.connections), handshake)
            self.connections.append(connection)
            self._changed()
            return connection._socket

    def _accepts(self, token: str | None) -> bool:
        if not token or token in self._revoked:
            return False
        return self._tokens is None or token in self._tokens

    # ------------------------------------------------------------------ serving

    def _receive(self, connection: MockConnection, text: str) -> None:
        try:
            frame = parse_client_frame(text)
        except ProtocolError as error:
            connection._send(error.to_frame())
            return
        with self._lock:
            connection.received.append(frame)
            self.received.append(frame)
            self._changed()
            try:
                if frame.action in BUILTIN_ACTIONS:
                    self._builtin(connection, frame)
                else:
                    self._application(connection, frame)
            except ProtocolError as error:
                connection._send(error.to_frame())

    def _builtin(self, connection: MockConnection, frame: ClientFrame) -> None:
        payload = builtin_payload(frame)
        if isinstance(payload, TopicPayload):
            if frame.action == "subscribe":
                connection.topics.add(payload.topic)
                connection._send(SubscribedFrame(request_id=frame.id, topic=payload.topic))
            else:
                connection.topics.discard(payload.topic)
                connection._send(UnsubscribedFrame(request_id=frame.id, topic=payload.topic))
            self._changed()
        elif isinstance(payload, RequestRefPayload):
            job = self._jobs_by_id.get(payload.request_id)
            if job is None:
                connection._send(
                    ErrorReply(
                        ErrorCode.NOT_FOUND,
                        f"no request {payload.request_id!r}",
                        {"field": "payload.request_id"},
                    ).frame(frame.id)
                )
                return
            if frame.action == "status":
                if not job.done():
                    job._followers.add(connection)
            elif job.status is RequestStatus.QUEUED:
                job._cancel()
            elif job.status is RequestStatus.PROCESSING:
                job.cancel_requested = True
            connection._send(StatusFrame(request_id=frame.id, snapshot=job.snapshot()))
        elif self.answer_pings:
            connection._send(PongFrame(request_id=frame.id))

    def _application(self, connection: MockConnection, frame: ClientFrame) -> None:
        script = self._scripts.get(frame.action)
        if script is None:
            connection._send(
                ErrorReply(
                    ErrorCode.NOT_FOUND, f"unknown action {frame.action!r}", {"field": "action"}
                ).frame(frame.id)
            )
            return
        request = MockRequest(
            id=frame.id,
            action=frame.action,
            payload=dict(frame.payload),
            metadata=dict(frame.metadata),
            connection=connection,
        )
        self.requests.append(request)
        if isinstance(script, _Reply):
            self._answer(request, script.answer)
        else:
            self._submit(request, script)

    def _answer(self, request: MockRequest, answer: Answer) -> None:
        try:
            value = _evaluate(answer, request)
        except Exception as error:
            value = self._crashed(request, error)
        if inspect.isawaitable(value):
            task = asyncio.get_running_loop().create_task(self._answer_later(request, value))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        request.connection._send(_response(request.id, value))

    async def _answer_later(self, request: MockRequest, pending: Awaitable[Any]) -> None:
        try:
            value = await pending
        except Exception as error:
            value = self._crashed(request, error)
        with self._lock:
            request.connection._send(_response(request.id, value))

    def _crashed(self, request: MockRequest, error: Exception) -> ErrorReply:
        if isinstance(error, ErrorReply):
            return error
        logger.error("reply to %s %s failed", request.action, request.id, exc_info=error)
        with self._lock:
            self.errors.append(error)
        return ErrorReply(ErrorCode.INTERNAL_ERROR, _INTERNAL_MESSAGE)

    def _submit(self, request: MockRequest, script: _JobScript) -> None:
        connection = request.connection
        existing = self._jobs_by_id.get(request.id)
        if existing is not None:
            same = (existing.action, existing.request.payload) == (request.action, request.payload)
            if not same:
                connection._send(
                    ErrorReply(
                        ErrorCode.CONFLICT,
                        "this request id was already used for a different action or payload",
                        {"field": "id"},
                    ).frame(request.id)
                )
                return
            if not existing.done():
                existing._followers.add(connection)
            connection._send(
                AcknowledgmentFrame(
                    request_id=request.id, action=request.action, status=existing.status
                )
            )
            return
        job = MockJob(self, request)
        job._followers.add(connection)
        self.jobs.append(job)
        self._jobs_by_id[job.id] = job
        connection._send(AcknowledgmentFrame(request_id=job.id, action=job.action))
        self._changed()
        if script.hold:
            return
        for step in script.progress:
            job.report(step.percentage, step.message, **step.metadata)
        if script.error is not None:
            job._end_with(script.error)
            return
        try:
            result = _evaluate(script.result, request)
        except Exception as error:
            job._end_with(self._crashed(request, error))
            return
        if isinstance(result, ErrorReply):
            job._end_with(result)
        else:
            job.complete(result)

    def _close(self, connection: MockConnection) -> None:
        """What ``$disconnect`` does: the connection's subscriptions and follows are gone."""
        with self._lock:
            if not connection.open:
                return
            connection._socket._state = State.CLOSED
            connection._socket._push(None)
            connection.topics.clear()
            for job in self.jobs:
                job._followers.discard(connection)
            self._changed()

    def _changed(self) -> None:
        for loop, changed in self._waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(changed.set)


def _evaluate(answer: Answer, request: MockRequest) -> Any:
    if isinstance(answer, BaseException):
        raise answer
    return answer(request) if callable(answer) else answer


def _response(request_id: str, value: Any) -> BaseModel:
    """``response``, or the ``error`` the real router sends for a value it cannot send."""
    if isinstance(value, ErrorReply):
        return value.frame(request_id)
    try:
        frame = ResponseFrame(request_id=request_id, result=value)
        encode(frame)
    except PydanticValidationError:
        return ErrorReply(ErrorCode.INTERNAL_ERROR, _INTERNAL_MESSAGE).frame(request_id)
    except FrameTooLargeError:
        return ErrorReply(
            ErrorCode.INTERNAL_ERROR, "the reply is larger than the 128 KB frame limit"
        ).frame(request_id)
    return frame


def _token_of(uri: str, headers: Mapping[str, str]) -> str | None:
    """The token as the real ``$connect`` looks for it: the Authorization header, then the query."""
    for name, value in headers.items():
        if name.lower() == "authorization" and value.startswith("Bearer "):
            return value.removeprefix("Bearer ").strip() or None
    for name, value in parse_qsl(urlsplit(uri).query):
        if name == "token":
            return value or None
    return None
