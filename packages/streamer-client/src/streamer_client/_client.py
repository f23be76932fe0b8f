"""The asyncio client: requests, jobs and subscriptions over one self-healing WebSocket.

Every client frame that expects an answer is a *call* keyed by its id until the answer arrives.
After a reconnect the client replays what the new socket must know: topics are subscribed
again, accepted jobs are re-attached with ``status`` (the server keeps their progress and
result), and requests queued while disconnected are sent. That is how a job survives any number
of reconnects and still ends exactly once.

A request written on a socket that dropped before any answer is different: the server may have
run it. It de-duplicates asynchronous actions by request id, but runs a synchronous action again
if the same frame comes twice, and the client cannot tell the two kinds apart before the first
answer. Such a call therefore fails with :class:`ConnectionFailed` ("outcome unknown") unless the
caller opted in with ``resend_unanswered=True`` because its actions are idempotent or
asynchronous.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from typing import Any

from streamer_core import (
    TERMINAL_STATUSES,
    AcknowledgmentFrame,
    ClientFrame,
    CompleteFrame,
    ErrorCode,
    ErrorFrame,
    EventFrame,
    ProgressFrame,
    ProtocolError,
    RequestStatus,
    ResponseFrame,
    ServerFrame,
    StatusFrame,
    TopicPayload,
    encode,
    parse_server_frame,
)

from streamer_client._calls import Call, CallTable
from streamer_client._connection import (
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_MAX_CONNECTION_AGE,
    ConnectionOptions,
    Connector,
    Link,
    TokenProvider,
    retry_delay,
)
from streamer_client._errors import (
    ClientClosed,
    ConnectionFailed,
    InvalidRequest,
    RemoteError,
    RequestTimeout,
    StreamerError,
    remote_error,
)
from streamer_client._jobs import Job
from streamer_client._states import ConnectionState, StateCallback, StateObserver
from streamer_client._subscriptions import Subscription, TopicEntry, TopicRegistry

__all__ = ["ProgressCallback", "StreamerClient"]

logger = logging.getLogger("streamer_client")

ProgressCallback = Callable[[ProgressFrame], object]
FrameCallback = Callable[[ServerFrame], object]

# Errors after which asking again for a job's status cannot succeed; any other is transient.
_FINAL_STATUS_ERRORS = frozenset(
    {ErrorCode.NOT_FOUND, ErrorCode.FORBIDDEN, ErrorCode.UNAUTHORIZED, ErrorCode.VALIDATION_ERROR}
)
_STATUS_RETRY_CODES = frozenset(ErrorCode) - _FINAL_STATUS_ERRORS
# Restoring a socket sends a burst (every topic, every job, the offline queue) that can exceed
# the server's per-connection rate; the refused part is sent again rather than lost.
_RESTORE_RETRY_CODES = frozenset({ErrorCode.RATE_LIMITED})
# With the default backoff the retries span more than the server's 60-second rate window.
_RETRY_LIMIT = 10
_UNSUBSCRIBE_WAIT = 5.0
# Well under the server's default of 100 messages a minute, leaving room for the topics and
# jobs a reconnect restores in the same burst.
DEFAULT_MAX_QUEUED = 50
# Event ids remembered to drop an event delivered twice (for example around a reconnect).
_RECENT_EVENTS = 1024


class _Hooks:
    """Connects the link's callbacks to the client without making them client methods."""

    def __init__(self, client: StreamerClient) -> None:
        self._client = client

    async def on_open(self) -> None:
        await self._client._restore()

    def on_message(self, data: str | bytes) -> None:
        self._client._receive(data)

    def on_down(self) -> None:
        self._client._connection_lost()

    def on_closed(self, error: ConnectionFailed) -> None:
        self._client._gave_up(error)

    async def heartbeat(self) -> None:
        await self._client._heartbeat()

    async def drain(self, patience: float) -> None:
        await self._client._drain(patience)


class StreamerClient:
    """Asyncio client for a Streamer WebSocket API.

    Use it as an async context manager; the connection is opened on entry and closed on exit::

        async with StreamerClient(url, token=token) as client:
            result = await client.request("echo", {"text": "hi"})

    ``token`` is sent as ``Authorization: Bearer ...`` (or as ``?token=`` with
    ``query_token=True``); ``token_provider`` (sync or async) is called before every connection
    attempt instead, so short-lived tokens are refreshed on reconnect. While disconnected, new
    requests wait in a bounded queue (``max_queued``) or, with
    ``queue_while_disconnected=False``, fail at once with :class:`ConnectionFailed`.

    A request already written when the connection drops, and not answered, fails with
    :class:`ConnectionFailed` because the server may or may not have run it; with
    ``resend_unanswered=True`` it is sent again with the same id instead, which is safe only for
    asynchronous actions (the server de-duplicates them by id) and idempotent synchronous ones.
    Accepted asynchronous jobs are never at risk: they are re-attached with ``status``.

    ``connect`` opens each socket (websockets' ``connect`` when None): pass
    ``streamer_client.testing.MockServer().connect`` to run against an in-memory server.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        token_provider: TokenProvider | None = None,
        query_token: bool = False,
        reconnect: bool = True,
        max_reconnect_attempts: int | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        backoff_factor: float = 2.0,
        heartbeat_interval: float | None = DEFAULT_HEARTBEAT_INTERVAL,
        heartbeat_timeout: float = 30.0,
        max_connection_age: float | None = DEFAULT_MAX_CONNECTION_AGE,
        open_timeout: float | None = 10.0,
        request_timeout: float | None = None,
        queue_while_disconnected: bool = True,
        max_queued: int = DEFAULT_MAX_QUEUED,
        resend_unanswered: bool = False,
        backoff_reset_after: float | None = None,
        max_buffered_events: int = 1000,
        on_state_change: StateCallback | None = None,
        on_frame: FrameCallback | None = None,
        connect: Connector | None = None,
    ) -> None:
        if token is not None and token_provider is not None:
            raise ValueError("pass either token or token_provider, not both")
        self.url = url
        self._options = ConnectionOptions(
            reconnect=reconnect,
            max_reconnect_attempts=max_reconnect_attempts,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            backoff_factor=backoff_factor,
            heartbeat_interval=heartbeat_interval,
            heartbeat_timeout=heartbeat_timeout,
            max_connection_age=max_connection_age,
            open_timeout=open_timeout,
            query_token=query_token,
            backoff_reset_after=backoff_reset_after,
        )
        self._request_timeout = request_timeout
        self._queue_while_disconnected = queue_while_disconnected
        self._max_queued = max_queued
        self._resend_unanswered = resend_unanswered
        self._max_buffered_events = max_buffered_events
        self._on_frame = on_frame
        self._observer = StateObserver()
        if on_state_change is not None:
            self._observer.add_callback(on_state_change)
        self._link = Link(
            url,
            token=token,
            token_provider=token_provider,
            options=self._options,
            observer=self._observer,
            hooks=_Hooks(self),
            connect=connect,
        )
        self._calls = CallTable()
        self._jobs: dict[str, Job] = {}
        self._topics = TopicRegistry()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._send_lock: asyncio.Lock | None = None
        self._opened = False
        self._closed = False
        self._failure: ConnectionFailed | None = None
        # Jobs the server said something about since the last heartbeat; the others are polled.
        self._heard: set[str] = set()
        self._recent_events: OrderedDict[tuple[str, str], None] = OrderedDict()

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> StreamerClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the first connection; raises :class:`ConnectionFailed` at once if it fails.

        A failed ``connect()`` leaves the client unopened, so calling it again tries again (the
        server may have come up in the meantime).
        """
        if self._closed:
            raise ClientClosed("client is closed")
        if self._opened:
            return
        self._opened = True
        self._send_lock = asyncio.Lock()
        try:
            await self._link.open()
        except ConnectionFailed:
            # No socket was ever adopted, so there is nothing to clean up before a retry.
            self._opened = False
            raise

    async def close(self) -> None:
        """Close the connection; pending requests fail with :class:`ClientClosed`."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await self._link.close()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._fail_everything(ClientClosed("client was closed"), quietly=True)

    @property
    def state(self) -> ConnectionState:
        """The connection's current state."""
        return self._observer.state

    @property
    def closed(self) -> bool:
        """Whether the client can no longer be used (closed, or gave up reconnecting)."""
        return self._closed or self._failure is not None

    def on_state_change(self, callback: StateCallback) -> Callable[[], None]:
        """Call ``callback`` on every state change; returns a function that stops it."""
        return self._observer.add_callback(callback)

    def states(self) -> AsyncIterator[ConnectionState]:
        """Iterate over the current state and every later change, until ``CLOSED``."""
        return self._observer.watch()

    # ------------------------------------------------------------------ requests

    async def request(
        self,
        action: str,
        payload: Mapping[str, Any] | None = None,
        *,
        on_progress: ProgressCallback | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 -- per call, like httpx and websockets
        metadata: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> Any:
        """Run ``action`` and return its result, whether the server answers at once or later.

        ``on_progress`` (sync or async) receives each :class:`ProgressFrame` of an asynchronous
        action in ``seq`` order. ``timeout`` (default: the client's ``request_timeout``) bounds
        the whole exchange and raises :class:`RequestTimeout`; remote failures raise the
        :class:`RemoteError` subclass of their code. A connection lost after the request was
        written but before any answer raises :class:`ConnectionFailed` ("outcome unknown"),
        since the server may have run it, unless the client was built with
        ``resend_unanswered=True``; once acknowledged, an asynchronous job survives any drop.
        """
        deadline, scope = self._time_limit(timeout)
        job: Job | None = None
        try:
            async with scope:
                job = await self._start(action, payload, metadata, request_id)
                if on_progress is not None:
                    async for update in job.progress():
                        outcome = on_progress(update)
                        if inspect.isawaitable(outcome):
                            await outcome
                return await job.result()
        except TimeoutError:
            if scope.expired():
                raise RequestTimeout(f"{action}: no result after {deadline} s") from None
            raise
        finally:
            if job is not None and not job.done():
                self._forget(job, RequestTimeout(f"{action}: caller stopped waiting"))

    async def submit(
        self,
        action: str,
        payload: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 -- per call, like httpx and websockets
        metadata: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> Job:
        """Send ``action`` and return its :class:`Job` once the server has accepted it.

        Acceptance is an ``acknowledgment`` for asynchronous actions (the job then runs on the
        server whatever happens to this connection), or the result itself for synchronous ones.
        A refusal raises here, and so does a connection lost before either arrived (see
        :meth:`request`).
        """
        deadline, scope = self._time_limit(timeout)
        job: Job | None = None
        try:
            async with scope:
                job = await self._start(action, payload, metadata, request_id)
                call = self._calls.get(job.id)
                if call is not None:
                    await asyncio.shield(call.future)
                elif job.done():
                    await job.result()
        except BaseException as exc:
            expired = isinstance(exc, TimeoutError) and scope.expired()
            if job is not None and not job.done():
                # Nobody will hold this job: stop tracking it rather than re-attach it forever.
                reason = "not accepted in time" if expired else "submit was abandoned"
                self._forget(job, ClientClosed(f"{action}: {reason}"))
            if expired:
                raise RequestTimeout(f"{action}: not accepted after {deadline} s") from None
            raise
        return job

    def _time_limit(self, timeout: float | None) -> tuple[float | None, asyncio.Timeout]:
        """A call's ``timeout``, else the client's ``request_timeout``: the seconds (which the
        error names) and the scope that enforces them."""
        seconds = timeout if timeout is not None else self._request_timeout
        return seconds, asyncio.timeout(seconds)

    @asynccontextmanager
    async def subscribe(self, topic: str) -> AsyncIterator[Subscription]:
        """Receive the topic's events inside the block; the subscription survives reconnects."""
        self._ensure_usable()
        try:
            TopicPayload(topic=topic)
        except ValueError as exc:
            raise InvalidRequest(f"invalid topic {topic!r}") from exc
        if not self._link.connected and not self._queue_while_disconnected:
            raise ConnectionFailed("not connected to the server")
        if self._topics.get(topic) is None:
            self._check_queue_room()
        subscription = Subscription(topic, self._max_buffered_events)
        entry, first = self._topics.add(subscription)
        try:
            if first:
                await self._send_subscribe(entry)
            await asyncio.shield(entry.confirmed)
        except BaseException:
            if self._topics.remove(subscription) and not self.closed:
                # The subscribe may already be on its way; without this the server would keep
                # sending the topic's events to a connection nobody listens on.
                self._spawn(self._unsubscribe(topic))
            raise
        try:
            yield subscription
        finally:
            subscription._close()
            if self._topics.remove(subscription):
                await self._unsubscribe(topic)

    # ------------------------------------------------------------------ driven by the link

    async def _restore(self) -> None:
        """Restore topics, re-attach accepted jobs and send what waits for a socket.

        Every frame sent here is marked ``restore``: if the burst trips the server's rate
        limit, the refused frames are sent again after a backoff instead of failing.
        """
        self._drop_transient_calls()
        for entry in self._topics.entries():
            await self._send_subscribe(entry, restore=True)
        for job in list(self._jobs.values()):
            if job.id not in self._calls and not job.done():
                await self._query_status(job, restore=True)
        for call in self._calls:
            if call.replay:
                call.restore = True
                await self._transmit(call)

    def _receive(self, data: str | bytes) -> None:
        """Parse and route one frame; a frame that does not parse is logged and skipped."""
        try:
            frame = parse_server_frame(data)
        except ProtocolError as exc:
            logger.warning("ignored a malformed frame from the server: %s", exc.message)
            return
        if self._on_frame is not None:
            try:
                self._on_frame(frame)
            except Exception:
                logger.exception("on_frame callback failed")
        self._dispatch(frame)

    def _connection_lost(self) -> None:
        """Forget what belonged to the lost socket and fail calls whose outcome is unknown.

        Calls never written wait for the next socket. Calls written and unanswered are resent
        only when that is safe (see :class:`Call`); the others fail now, so that a synchronous
        action is never run twice behind the caller's back.
        """
        self._drop_transient_calls()
        for call in self._calls:
            if not call.replay or not call.written or call.resend_safe:
                continue
            error = ConnectionFailed(
                f"{call.frame.action}: outcome unknown: the connection dropped before the answer"
                " (the server may or may not have run it; resend_unanswered=True sends it again)"
            )
            job = self._jobs.get(call.id)
            if job is not None:
                self._forget(job, error)
            else:
                self._calls.fail(call.id, error)

    def _gave_up(self, error: ConnectionFailed) -> None:
        """The link gave up: everything still waiting fails with the reason."""
        self._failure = error
        logger.warning("connection closed for good: %s", error)
        self._fail_everything(error, quietly=False)

    async def _heartbeat(self) -> None:
        """Send ``ping`` and wait for ``pong``; keeps idle connections open at the gateway."""
        call = self._register(ClientFrame(action="ping"), replay=False, internal=True)
        await self._transmit(call)
        try:
            await call.future
        except RemoteError as exc:
            # Any answer, even a refusal such as RATE_LIMITED, proves the socket is alive.
            logger.debug("ping answered with %s", exc.code)
        self._poll_quiet_jobs()

    def _poll_quiet_jobs(self) -> None:
        """Ask ``status`` of accepted jobs the server has said nothing about for a heartbeat.

        A job's final frame can be lost (sent to a socket that was just replaced, or dropped
        on the way); without asking, the caller would wait forever. A job that is heard from
        costs nothing, and the answer ends the job at most once like any other final frame.
        """
        querying = {call.job_id for call in self._calls if call.frame.action == "status"}
        for job in list(self._jobs.values()):
            quiet = job.id not in self._heard and job.id not in querying
            if quiet and not job.done() and job.id not in self._calls:
                self._spawn(self._query_status(job))
        self._heard.clear()

    async def _drain(self, patience: float) -> None:
        """Wait for answers to requests written on the current socket, before renewing it."""
        pending = [call.future for call in self._calls.in_flight(self._link.generation)]
        if pending:
            await asyncio.wait(pending, timeout=patience)

    # ------------------------------------------------------------------ internals

    def _ensure_usable(self) -> None:
        if self._closed:
            raise ClientClosed("client is closed")
        if self._failure is not None:
            raise ConnectionFailed(str(self._failure))
        if not self._opened:
            raise ClientClosed("client is not connected: use 'async with' or 'await connect()'")

    async def _start(
        self,
        action: str,
        payload: Mapping[str, Any] | None,
        metadata: Mapping[str, str] | None,
        request_id: str | None,
    ) -> Job:
        self._ensure_usable()
        fields: dict[str, Any] = {"action": action, "payload": dict(payload or {})}
        if metadata:
            fields["metadata"] = dict(metadata)
        if request_id is not None:
            fields["id"] = request_id
        try:
            frame = ClientFrame(**fields)
        except ValueError as exc:
            raise InvalidRequest(f"invalid request {action!r}: {_first_error(exc)}") from None
        if frame.id in self._jobs:
            raise InvalidRequest(f"request id {frame.id} is already pending")
        call = self._register(
            frame, replay=True, job_id=frame.id, resend_safe=self._resend_unanswered
        )
        job = Job(frame.id, action, canceller=self._cancel)
        self._jobs[job.id] = job
        try:
            await self._transmit(call)
        except BaseException:
            # Cancelled or timed out while waiting to write: nobody will ever await this job.
            self._forget(job, ClientClosed(f"{action}: abandoned before it was sent"))
            raise
        return job

    def _register(
        self,
        frame: ClientFrame,
        *,
        replay: bool,
        job_id: str | None = None,
        internal: bool = False,
        resend_safe: bool = False,
        retry_codes: frozenset[ErrorCode] = frozenset(),
        restore: bool = False,
    ) -> Call:
        try:
            text = encode(frame)
        except ProtocolError as exc:
            raise InvalidRequest(f"{frame.action}: {exc.message}") from None
        if not internal:
            self._check_queue_room()
        future: asyncio.Future[ServerFrame] = asyncio.get_running_loop().create_future()
        call = Call(
            frame,
            text,
            future,
            replay,
            job_id,
            resend_safe=resend_safe,
            restore=restore,
            retry_codes=retry_codes,
        )
        self._calls.add(call)
        return call

    def _check_queue_room(self) -> None:
        """Refuse new work while disconnected when queueing is off or the queue is full.

        Topics waiting to be subscribed count too: the next socket carries them in the same
        burst as the queued requests.
        """
        if self._link.connected:
            return
        if not self._queue_while_disconnected:
            raise ConnectionFailed("not connected to the server (queueing is disabled)")
        waiting = self._calls.waiting_to_send() + self._topics.unconfirmed()
        if waiting >= self._max_queued:
            raise ConnectionFailed(f"not connected and {waiting} requests already wait to be sent")

    async def _transmit(self, call: Call) -> None:
        """Write the call on the current socket unless it is already there or answered."""
        assert self._send_lock is not None
        async with self._send_lock:
            generation = self._link.generation
            if not self._calls.holds(call) or call.sent_generation == generation:
                return
            # Marked before the write: if the socket drops while the frame is on its way, the
            # call must already count as written (its outcome is then unknown).
            previous, call.sent_generation = call.sent_generation, generation
            if not await self._link.send(call.text):
                call.sent_generation = previous

    def _drop_transient_calls(self) -> None:
        self._calls.drop_transient(connected=self._link.connected, generation=self._link.generation)

    async def _send_subscribe(self, entry: TopicEntry, *, restore: bool = False) -> None:
        frame = ClientFrame(action="subscribe", payload={"topic": entry.topic})
        call = self._register(frame, replay=False, internal=True, restore=restore)

        def settle(future: asyncio.Future[ServerFrame]) -> None:
            if future.cancelled():
                return
            error = future.exception()
            if error is None:
                entry.confirm()
            elif self._topics.get(entry.topic) is entry:
                logger.warning("subscription to %r refused: %s", entry.topic, error)
                self._topics.fail(entry.topic, error)

        call.future.add_done_callback(settle)
        await self._transmit(call)

    async def _unsubscribe(self, topic: str) -> None:
        # A subscriber that came back for the topic meanwhile needs the server's subscription.
        if self.closed or not self._link.connected or self._topics.get(topic) is not None:
            return
        frame = ClientFrame(action="unsubscribe", payload={"topic": topic})
        call = self._register(frame, replay=False, internal=True)
        try:
            await self._transmit(call)
            await asyncio.wait_for(asyncio.shield(call.future), _UNSUBSCRIBE_WAIT)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # The caller itself is being cancelled: that must reach it.
                raise
            # Only the call was cancelled, because its socket went away.
            logger.debug("unsubscribe from %r not confirmed: the connection dropped", topic)
        except (StreamerError, TimeoutError) as exc:
            # Leaving must not fail: the server drops the subscription with the connection anyway.
            logger.debug("unsubscribe from %r not confirmed: %r", topic, exc)
        finally:
            self._calls.pop(call.id)

    async def _query_status(self, job: Job, *, restore: bool = False) -> None:
        frame = ClientFrame(action="status", payload={"request_id": job.id})
        call = self._register(
            frame,
            replay=False,
            job_id=job.id,
            internal=True,
            retry_codes=_STATUS_RETRY_CODES,
            restore=restore,
        )
        call.future.add_done_callback(_consume)
        await self._transmit(call)

    async def _cancel(self, job: Job) -> RequestStatus:
        self._ensure_usable()
        frame = ClientFrame(action="cancel", payload={"request_id": job.id})
        # Cancelling twice is harmless, so an unanswered cancel is always sent again.
        call = self._register(frame, replay=True, job_id=job.id, resend_safe=True)
        await self._transmit(call)
        answer = await call.future
        if isinstance(answer, StatusFrame):
            return answer.snapshot.status
        return job.status

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _forget(self, job: Job, error: BaseException) -> None:
        """Stop tracking a job nobody waits for, so it is not re-attached forever."""
        self._untrack(job.id)
        self._calls.fail(job.id, error)
        job._fail(error)

    def _untrack(self, job_id: str) -> Job | None:
        self._heard.discard(job_id)
        return self._jobs.pop(job_id, None)

    def _fail_everything(self, error: StreamerError, *, quietly: bool) -> None:
        self._calls.fail_all(error)
        for job in self._jobs.values():
            job._fail(error)
        self._jobs.clear()
        self._heard.clear()
        self._topics.close_all(error, quietly=quietly)

    def _answer(self, request_id: str, frame: ServerFrame) -> Call | None:
        return self._calls.answer(request_id, frame)

    def _dispatch(self, frame: ServerFrame) -> None:
        if isinstance(frame, EventFrame):
            if self._seen_event(frame):
                logger.debug("dropped event %s on %r delivered twice", frame.id, frame.topic)
            elif not self._topics.deliver(frame):
                logger.debug("event for topic %r without subscriber", frame.topic)
        elif isinstance(frame, ErrorFrame):
            self._on_error(frame)
        elif isinstance(frame, ProgressFrame):
            job = self._jobs.get(frame.request_id)
            if job is None:
                logger.debug("progress for unknown request %s", frame.request_id)
                return
            self._heard.add(job.id)
            # Progress proves the server has the request, even if its acknowledgment is late.
            self._answer(frame.request_id, frame)
            job._deliver_progress(frame)
        elif isinstance(frame, AcknowledgmentFrame):
            self._answer(frame.request_id, frame)
            job = self._jobs.get(frame.request_id)
            if job is not None:
                self._heard.add(job.id)
                job._acknowledge(frame.status)
                if frame.status in TERMINAL_STATUSES:
                    # A resent id whose work already ended: fetch how it ended.
                    self._spawn(self._query_status(job))
        elif isinstance(frame, ResponseFrame | CompleteFrame):
            self._answer(frame.request_id, frame)
            job = self._untrack(frame.request_id)
            if job is not None:
                job._resolve(frame.result)
        elif isinstance(frame, StatusFrame):
            self._answer(frame.request_id, frame)
            job = self._jobs.get(frame.snapshot.request_id)
            if job is not None:
                self._heard.add(job.id)
                job._apply_snapshot(frame.snapshot)
                if job.done():
                    self._untrack(job.id)
                    # A submit still waiting for its acknowledgment learns the job is over.
                    self._answer(job.id, frame)
        else:
            self._answer(frame.request_id, frame)

    def _seen_event(self, frame: EventFrame) -> bool:
        """Whether this event was already delivered (event ids are unique per event)."""
        key = (frame.topic, frame.id)
        if key in self._recent_events:
            self._recent_events.move_to_end(key)
            return True
        self._recent_events[key] = None
        if len(self._recent_events) > _RECENT_EVENTS:
            self._recent_events.popitem(last=False)
        return False

    def _on_error(self, frame: ErrorFrame) -> None:
        error = remote_error(frame.code, frame.message, frame.details, request_id=frame.request_id)
        if frame.request_id is None:
            logger.warning("server reported an error: %s", error)
            return
        call = self._calls.get(frame.request_id)
        if call is not None and self._retry_later(call, error):
            return
        self._calls.fail(frame.request_id, error)
        if call is not None and call.frame.action == "status" and call.job_id is not None:
            job = self._untrack(call.job_id)
            if job is not None:
                # The server cannot say how the job ends; waiting for it would hang forever.
                logger.warning("status of job %s not available: %s", job.id, error)
                job._fail(error)
            return
        job = self._untrack(frame.request_id)
        if job is not None:
            job._fail(error)
        elif call is None:
            logger.debug("error for unknown request %s: %s", frame.request_id, error)

    def _retry_later(self, call: Call, error: RemoteError) -> bool:
        """Send a refused call again after a backoff when the refusal is transient for it.

        The count lives on the call, so each query or restore gets its own retries, however
        many a long job needed before.
        """
        codes = call.retry_codes | _RESTORE_RETRY_CODES if call.restore else call.retry_codes
        if error.code not in codes or call.attempts >= _RETRY_LIMIT or self.closed:
            return False
        call.attempts += 1
        # The server refused the frame without acting on it: it waits for a socket again.
        call.sent_generation = 0
        options = self._options
        delay = retry_delay(
            call.attempts, options.backoff_initial, options.backoff_max, options.backoff_factor
        )
        logger.warning(
            "%s %s refused (%s); trying again in %.1f s", call.frame.action, call.id, error, delay
        )
        self._spawn(self._retry(call, delay))
        return True

    async def _retry(self, call: Call, delay: float) -> None:
        await asyncio.sleep(delay)
        # Answered, dropped with its socket, or already resent by a reconnect in the meantime.
        if self._calls.holds(call) and not call.written:
            await self._transmit(call)


def _consume(future: asyncio.Future[ServerFrame]) -> None:
    """Mark a fire-and-forget call's outcome as seen; its errors are handled by the dispatcher."""
    if not future.cancelled():
        future.exception()


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        details = errors(include_url=False, include_input=False)
        if details:
            first = details[0]
            location = ".".join(str(part) for part in first.get("loc", ()))
            return f"{location}: {first.get('msg', '')}" if location else str(first.get("msg"))
    return str(exc)
