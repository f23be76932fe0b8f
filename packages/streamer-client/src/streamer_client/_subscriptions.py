"""Topic subscriptions: what the client must remember to restore them after a reconnect.

Several parts of one application may subscribe to the same topic; the server sees a single
subscription per topic and the client fans events out locally, so leaving one ``async with``
block never silences another.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from streamer_core import EventFrame

__all__ = ["Subscription", "TopicRegistry"]

logger = logging.getLogger("streamer_client")

_END = object()


class Subscription:
    """Events of one topic, in arrival order; iterate it with ``async for``.

    The buffer is bounded: a consumer that falls far behind loses the oldest events (with a
    warning) rather than growing memory without limit.
    """

    def __init__(self, topic: str, max_buffered: int) -> None:
        self.topic = topic
        self._max_buffered = max_buffered
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._error: BaseException | None = None
        self._closed = False
        self.dropped = 0

    def __repr__(self) -> str:
        return f"<Subscription topic={self.topic!r}>"

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> EventFrame:
        item = await self._queue.get()
        if item is _END:
            self._queue.put_nowait(_END)
            if self._error is not None:
                raise self._error
            raise StopAsyncIteration
        assert isinstance(item, EventFrame)
        return item

    def _deliver(self, event: EventFrame) -> None:
        if self._closed:
            return
        if self._queue.qsize() >= self._max_buffered:
            self._queue.get_nowait()
            self.dropped += 1
            logger.warning(
                "subscription to %r is %d events behind; dropped the oldest",
                self.topic,
                self._max_buffered,
            )
        self._queue.put_nowait(event)

    def _close(self, error: BaseException | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        self._error = error
        self._queue.put_nowait(_END)


@dataclass(eq=False)
class TopicEntry:
    """One topic as the server knows it, shared by every local subscriber."""

    topic: str
    confirmed: asyncio.Future[None]
    subscribers: list[Subscription] = field(default_factory=list)

    def confirm(self) -> None:
        if not self.confirmed.done():
            self.confirmed.set_result(None)


class TopicRegistry:
    """Topics with at least one local subscriber, in subscription order."""

    def __init__(self) -> None:
        self._entries: dict[str, TopicEntry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[TopicEntry]:
        return list(self._entries.values())

    def get(self, topic: str) -> TopicEntry | None:
        return self._entries.get(topic)

    def unconfirmed(self) -> int:
        """Topics whose subscribe the server has not confirmed: frames a new socket must carry."""
        return sum(1 for entry in self._entries.values() if not entry.confirmed.done())

    def add(self, subscription: Subscription) -> tuple[TopicEntry, bool]:
        """Attach a subscriber; ``True`` when the server must be told about the topic."""
        entry = self._entries.get(subscription.topic)
        first = entry is None
        if entry is None:
            confirmed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            entry = TopicEntry(subscription.topic, confirmed)
            self._entries[subscription.topic] = entry
        entry.subscribers.append(subscription)
        return entry, first

    def remove(self, subscription: Subscription) -> bool:
        """Detach a subscriber; ``True`` when it was the topic's last one."""
        entry = self._entries.get(subscription.topic)
        if entry is None or subscription not in entry.subscribers:
            return False
        entry.subscribers.remove(subscription)
        if entry.subscribers:
            return False
        del self._entries[subscription.topic]
        return True

    def deliver(self, event: EventFrame) -> bool:
        entry = self._entries.get(event.topic)
        if entry is None:
            return False
        for subscription in entry.subscribers:
            subscription._deliver(event)
        return True

    def fail(self, topic: str, error: BaseException) -> None:
        """The server refused the topic: end its subscribers with that error."""
        entry = self._entries.pop(topic, None)
        if entry is None:
            return
        if not entry.confirmed.done():
            entry.confirmed.set_exception(error)
            entry.confirmed.exception()
        for subscription in entry.subscribers:
            subscription._close(error)

    def close_all(self, error: BaseException, *, quietly: bool) -> None:
        """End every subscription; ``quietly`` ends iteration instead of raising ``error``."""
        for entry in self._entries.values():
            if not entry.confirmed.done():
                entry.confirmed.set_exception(error)
                entry.confirmed.exception()
            for subscription in entry.subscribers:
                subscription._close(None if quietly else error)
        self._entries.clear()
