"""Blocking facade over the asyncio client, for code without an event loop (Django, Flask, scripts).

The asyncio client runs on an event loop in a background thread that this facade owns; each
method hands its coroutine to that loop and waits for the outcome, the way ``websockets.sync``
and ``httpx.Client`` mirror their async siblings. Progress callbacks passed to :meth:`request`
run in the calling thread; ``on_state_change`` callbacks run in the background thread.
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

from . import client as async_client
from .errors import ClientClosed, RequestTimeout
from .jobs import Job as AsyncJob
from .states import ConnectionState, StateCallback
from .subscriptions import Subscription as AsyncSubscription

__all__ = ["Job", "StreamerClient", "Subscription"]

T = TypeVar("T")

_DONE = object()


class _Portal:
    """An event loop in a daemon thread, and the way into it from other threads."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="streamer-client", daemon=True
        )
        self._thread.start()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if self._loop.is_closed():
            coroutine.close()
            raise ClientClosed("client is closed")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future = self.submit(coroutine)
        try:
            result: T = future.result()
        except BaseException:
            future.cancel()
            raise
        return result

    def stop(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


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
        try:
            return self.receive()
        except StopAsyncIteration:
            raise StopIteration from None

    def receive(self, timeout: float | None = None) -> EventFrame:
        """Wait for the next event; :class:`RequestTimeout` if none comes within ``timeout``."""
        try:
            return self._portal.run(_next_within(self._subscription, timeout))
        except TimeoutError:
            raise RequestTimeout(f"no event on {self.topic!r} within {timeout} s") from None


async def _next_within(subscription: AsyncSubscription, seconds: float | None) -> EventFrame:
    return await asyncio.wait_for(subscription.__anext__(), seconds)


def _bridge(iterator: AsyncIterator[T], portal: _Portal) -> Iterator[T]:
    try:
        while True:
            try:
                yield portal.run(_anext(iterator))
            except StopAsyncIteration:
                return
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
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

    def __enter__(self) -> StreamerClient:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def connect(self) -> None:
        """Start the background loop and open the connection."""
        if self._portal is not None:
            return
        portal = _Portal()
        try:
            portal.run(self._client.connect())
        except BaseException:
            portal.stop()
            raise
        self._portal = portal

    def close(self) -> None:
        """Close the connection and stop the background loop."""
        portal, self._portal = self._portal, None
        if portal is None:
            return
        try:
            portal.run(self._client.close())
        finally:
            portal.stop()

    @property
    def state(self) -> ConnectionState:
        return self._client.state

    def on_state_change(self, callback: StateCallback) -> Callable[[], None]:
        """Register a state callback; it runs in the background thread."""
        return self._client.on_state_change(callback)

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
            return future.result()
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
            portal.run(manager.__aexit__(None, None, None))

    def _require_portal(self) -> _Portal:
        if self._portal is None:
            raise ClientClosed("client is not connected: use 'with' or call connect()")
        return self._portal
