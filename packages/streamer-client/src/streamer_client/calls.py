"""Client frames waiting for their answer, keyed by frame id.

The server answers every client frame with a frame carrying its id, so one table routes every
answer back to whoever waits for it, and tells the client what to send again on a new socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

from streamer_core import ClientFrame, ServerFrame

__all__ = ["Call", "CallTable"]


@dataclass(eq=False)
class Call:
    """A client frame waiting for its answer.

    ``replay`` calls (user actions, cancel) are resent with the same id on every new socket until
    answered, and the server de-duplicates them; the others (ping, status, subscribe,
    unsubscribe) belong to one socket and are recreated by the client as needed.
    """

    frame: ClientFrame
    text: str
    future: asyncio.Future[ServerFrame]
    replay: bool
    job_id: str | None = None
    sent_generation: int = 0

    @property
    def id(self) -> str:
        return self.frame.id


class CallTable:
    """Pending calls in the order they were made, which is also the order they are resent."""

    def __init__(self) -> None:
        self._calls: dict[str, Call] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._calls

    def __iter__(self) -> Iterator[Call]:
        return iter(list(self._calls.values()))

    def get(self, request_id: str) -> Call | None:
        return self._calls.get(request_id)

    def add(self, call: Call) -> None:
        self._calls[call.id] = call

    def holds(self, call: Call) -> bool:
        """Whether ``call`` itself (not an older call with its id) still waits."""
        return self._calls.get(call.id) is call

    def waiting_to_send(self) -> int:
        """Calls a new socket would have to carry: the bound of the offline queue."""
        return sum(1 for call in self._calls.values() if call.replay)

    def pop(self, request_id: str) -> Call | None:
        return self._calls.pop(request_id, None)

    def answer(self, request_id: str, frame: ServerFrame) -> Call | None:
        call = self._calls.pop(request_id, None)
        if call is not None and not call.future.done():
            call.future.set_result(frame)
        return call

    def fail(self, request_id: str, error: BaseException) -> Call | None:
        call = self._calls.pop(request_id, None)
        if call is not None:
            _settle_with(call, error)
        return call

    def drop_transient(self, *, connected: bool, generation: int) -> None:
        """Cancel the calls that only made sense on a socket that is gone (or never had them)."""
        for call in list(self._calls.values()):
            if not call.replay and (not connected or call.sent_generation != generation):
                del self._calls[call.id]
                call.future.cancel()

    def fail_all(self, error: BaseException) -> None:
        for call in self._calls.values():
            _settle_with(call, error)
        self._calls.clear()


def _settle_with(call: Call, error: BaseException) -> None:
    if not call.future.done():
        call.future.set_exception(error)
        # Fire-and-forget calls have no awaiter; the error is handled where it is raised.
        call.future.exception()
