"""Blocking facade over the asyncio client, for code without an event loop (Django, Flask, scripts).

It is not a second implementation: the asyncio client runs on an event loop in a background
thread that this facade owns, and each method hands its coroutine to that loop and blocks
until the outcome, so both clients share every reconnect, job and subscription rule.
Progress callbacks passed to :meth:`request` run in the calling thread; ``on_state_change``
callbacks run in the background thread.

Calls can come from any thread at any time, including while another thread closes the client,
so the background loop is guarded: once closing starts every call raises :class:`ClientClosed`
at once instead of waiting on a loop that will never run it. A call from the background thread
itself (a state callback calling back into the client) would wait for the very thread it blocks
and raises :class:`RuntimeError` instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

from streamer_core import EventFrame, ProgressFrame, RequestStatus

from streamer_client import _client as async_client
from streamer_client._errors import ClientClosed, RequestTimeout
from streamer_client._jobs import Job as AsyncJob
from streamer_client._states import ConnectionState, StateCallback
from streamer_client._subscriptions import Subscription as AsyncSubscription

__all__ = ["Job", "StreamerClient", "Subscription"]

T = TypeVar("T")

_DONE = object()


class _Portal:
    """An event loop in a daemon thread, and the way into it from other threads.

    ``_lock`` makes "is the loop still taking work?" and "hand it the work" one step, so no
    coroutine is ever scheduled on a loop that is stopping (it would never run, and its caller
    would wait forever).
    """

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="streamer-client", daemon=True
        )
        self._thread.start()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        with self._lock:
            if self._stopping:
                coroutine.close()
                raise ClientClosed("client is closed")
            return self._schedule(coroutine)

    def check_caller(self) -> None:
        """Refuse to block the loop's own thread, which would wait for itself forever."""
        if threading.get_ident() == self._thread.ident:
            raise RuntimeError(
                "blocking streamer_client.sync methods cannot be called from the client's own "
                "thread (for example inside on_state_change); use the asyncio client there"
            )

    def _schedule(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        try:
            self.check_caller()
        except RuntimeError:
            coroutine.close()
            raise
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.wait(self.submit(coroutine))

    def wait(self, future: concurrent.futures.Future[T]) -> T:
        """The outcome of ``future``; work cut short by closing raises :class:`ClientClosed`."""
        try:
            result: T = future.result()
        except concurrent.futures.CancelledError:
            if self._stopping:
                raise ClientClosed("client was closed") from None
            raise
        except BaseException:
            future.cancel()
            raise
        return result

    def shutdown(self, final: Coroutine[Any, Any, None]) -> None:
        """Refuse new work, run ``final`` (closing the client), end what is left, stop."""
        try:
            self.check_caller()
        except RuntimeError:
            final.close()
            raise
        with self._lock:
            if self._stopping:
                final.close()
                return
            self._stopping = True
            future = self._schedule(final)
        try:
            future.result()
        finally:
            asyncio.run_coroutine_threadsafe(_cancel_the_rest(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()


async def _cancel_the_rest() -> None:
    """End calls still running on the loop, so that their callers get an answer."""
    current = asyncio.current_task()
    rest = [task for task in asyncio.all_tasks() if task is not current]
    for task in rest:
        task.cancel()
    await asyncio.gather(*rest, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()


class Job:
    """Blocking view of an :class:`streamer_client.Job`."""

    def __init__(self, job: AsyncJob, portal: _Portal) -> None:
        self._job = job
        self._portal = portal

    def __repr__(self) -> str:
        return repr(self._job)

    @property
    def id(self) -> str:
        return self._job.id

    @property
    def action(self) -> str:
        return self._job.action

    @property
    def status(self) -> RequestStatus:
        return self._job.status

    @property
    def latest_progress(self) -> ProgressFrame | None:
        return self._job.latest_progress

    def done(self) -> bool:
        return self._job.done()

    def progress(self) -> Iterator[ProgressFrame]:
        """Yield updates in ``seq`` order until the job ends."""
        return _bridge(self._job.progress(), self._portal)

    def result(self, timeout: float | None = None) -> Any:
        """Block until the result; raises the typed remote error when the job failed."""
        return self._portal.run(self._job.result(timeout))

    def cancel(self) -> RequestStatus:
        """Ask the server to cancel the job; returns the status it reported."""
        return self._portal.run(self._job.cancel())


class Subscription:
    """Blocking iterator over one topic's events."""

    def __init__(self, subscription: AsyncSubscription, portal: _Portal) -> None:
        self._subscription = subscription
        self._portal = portal
        self.topic = subscription.topic

    def __iter__(self) -> Iterator[EventFrame]:
        return self

    def __next__(self) -> EventFrame:
        return self.receive()

    def receive(self, timeout: float | None = None) -> EventFrame:
        """Wait for the next event; :class:`RequestTimeout` if none comes within ``timeout``.

        Raises :class:`StopIteration` once the subscription ended (the client was closed).
        """
        try:
            return self._portal.run(_next_within(self._subscription, timeout))
        except TimeoutError:
            raise RequestTimeout(f"no event on {self.topic!r} within {timeout} s") from None
        except (StopAsyncIteration, ClientClosed):
            raise StopIteration from None


async def _next_within(subscription: AsyncSubscription, seconds: float | None) -> EventFrame:
    return await asyncio.wait_for(subscription.__anext__(), seconds)


def _bridge(iterator: AsyncIterator[T], portal: _Portal) -> Iterator[T]:
    """Iterate an async iterator from another thread; a closed client ends the iteration,
    as closing ends the async iterators themselves."""
    try:
        while True:
            try:
                yield portal.run(_anext(iterator))
            except (StopAsyncIteration, ClientClosed):
                return
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None and not portal.stopping:
            with suppress(ClientClosed):
                portal.run(aclose())


async def _anext(iterator: AsyncIterator[T]) -> T:
    return await iterator.__anext__()


class StreamerClient:
    """Blocking client with the methods of :class:`streamer_client.StreamerClient`.

    Takes the same keyword arguments; use it as a context manager or call :meth:`connect` and
    :meth:`close`.
    """

    def __init__(self, url: str, **options: Any) -> None:
        self.url = url
        self._client = async_client.StreamerClient(url, **options)
        self._portal: _Portal | None = None
        # Serialises connect and close, so two threads never start or stop the loop together.
        self._lifecycle = threading.Lock()

    def __enter__(self) -> StreamerClient:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def connect(self) -> None:
        """Start the background loop and open the connection."""
        with self._lifecycle:
            if self._portal is not None:
                return
            portal = _Portal()
            try:
                portal.run(self._client.connect())
            except BaseException:
                portal.shutdown(_nothing())
                raise
            self._portal = portal

    def close(self) -> None:
        """Close the connection and stop the background loop; calls in progress fail."""
        portal = self._portal
        if portal is not None:
            portal.check_caller()
        with self._lifecycle:
            portal, self._portal = self._portal, None
            if portal is not None:
                portal.shutdown(self._client.close())

    @property
    def state(self) -> ConnectionState:
        """The connection's current state."""
        return self._client.state

    @property
    def closed(self) -> bool:
        """Whether the client can no longer be used (closed, or gave up reconnecting)."""
        return self._client.closed

    def on_state_change(self, callback: StateCallback) -> Callable[[], None]:
        """Register a state callback; it runs in the background thread."""
        return self._client.on_state_change(callback)

    def states(self) -> Iterator[ConnectionState]:
        """Iterate over the current state and every later change, until ``CLOSED``."""
        return _bridge(self._client.states(), self._require_portal())

    def request(
        self,
        action: str,
        payload: Mapping[str, Any] | None = None,
        *,
        on_progress: Callable[[ProgressFrame], object] | None = None,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> Any:
        """Run ``action`` and return its result; ``on_progress`` runs in this thread."""
        portal = self._require_portal()
        updates: queue.SimpleQueue[object] = queue.SimpleQueue()
        future = portal.submit(
            self._client.request(
                action,
                payload,
                on_progress=updates.put if on_progress is not None else None,
                timeout=timeout,
                metadata=metadata,
                request_id=request_id,
            )
        )
        future.add_done_callback(lambda _: updates.put(_DONE))
        try:
            while (update := updates.get()) is not _DONE:
                if on_progress is not None:
                    assert isinstance(update, ProgressFrame)
                    on_progress(update)
            return portal.wait(future)
        except BaseException:
            future.cancel()
            raise

    def submit(
        self,
        action: str,
        payload: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> Job:
        """Send ``action`` and return its job once the server accepted it."""
        portal = self._require_portal()
        job = portal.run(
            self._client.submit(
                action, payload, timeout=timeout, metadata=metadata, request_id=request_id
            )
        )
        return Job(job, portal)

    @contextmanager
    def subscribe(self, topic: str) -> Iterator[Subscription]:
        """Receive the topic's events inside the block; survives reconnects."""
        portal = self._require_portal()
        manager = self._client.subscribe(topic)
        subscription = portal.run(manager.__aenter__())
        try:
            yield Subscription(subscription, portal)
        finally:
            # A client closed meanwhile has already ended the subscription.
            with suppress(ClientClosed):
                portal.run(manager.__aexit__(None, None, None))

    def _require_portal(self) -> _Portal:
        portal = self._portal
        if portal is None:
            raise ClientClosed("client is not connected: use 'with' or call connect()")
        return portal


async def _nothing() -> None:
    """The final step of a loop whose client never opened: there is nothing to close."""
