"""Connection states, observable by callback or by async iteration.

Applications show "reconnecting..." banners or pause producers while the link is down; they need
the transitions, not just a boolean, and they need them without polling.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from enum import StrEnum

__all__ = ["ConnectionState", "StateCallback", "StateObserver"]

logger = logging.getLogger("streamer_client")


class ConnectionState(StrEnum):
    """Where the client's link to the server stands."""

    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


StateCallback = Callable[[ConnectionState], object]


class StateObserver:
    """Holds the current state and fans each change out to callbacks and iterators."""

    def __init__(self) -> None:
        self._state = ConnectionState.IDLE
        self._callbacks: list[StateCallback] = []
        self._queues: list[asyncio.Queue[ConnectionState]] = []

    @property
    def state(self) -> ConnectionState:
        """The state as of the last transition."""
        return self._state

    def set(self, state: ConnectionState) -> None:
        """Record a transition; repeated states are not news and are not re-announced."""
        if state == self._state:
            return
        self._state = state
        for callback in list(self._callbacks):
            try:
                callback(state)
            except Exception:
                # An observer's bug must not break the connection it observes.
                logger.exception("connection state callback failed")
        for queue in self._queues:
            queue.put_nowait(state)

    def add_callback(self, callback: StateCallback) -> Callable[[], None]:
        """Register ``callback``; the returned function unregisters it."""
        self._callbacks.append(callback)

        def remove() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return remove

    async def watch(self) -> AsyncIterator[ConnectionState]:
        """Yield the current state, then every change, ending after ``CLOSED``."""
        queue: asyncio.Queue[ConnectionState] = asyncio.Queue()
        queue.put_nowait(self._state)
        self._queues.append(queue)
        try:
            while True:
                state = await queue.get()
                yield state
                if state is ConnectionState.CLOSED:
                    return
        finally:
            self._queues.remove(queue)
