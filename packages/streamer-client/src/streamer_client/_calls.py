"""Client frames waiting for their answer, keyed by frame id.

The server answers every client frame with a frame carrying its id, so one table routes every
answer back to whoever waits for it, and tells the client what to send again on a new socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field

from streamer_core import ClientFrame, ErrorCode, ServerFrame

__all__ = ["Call", "CallTable"]


@dataclass(eq=False)
class Call:
    """A client frame waiting for its answer.

    ``replay`` calls (user actions, cancel) outlive the socket they were written on; the others
    (ping, status, subscribe, unsubscribe) belong to one socket and are recreated by the client
    as needed. A replay call that was never written is simply sent on the next socket. One that
    was written and not answered has an unknown outcome: it is sent again only when
    ``resend_safe`` says the server cannot run it twice (``cancel`` is idempotent; the server
    de-duplicates asynchronous actions by id but not synchronous ones, and before an answer
    the client cannot tell which kind an action is).

    ``retry_codes`` are refusals worth asking again after a backoff, counted in ``attempts``;
    ``restore`` marks frames sent to rebuild state on a new socket, for which a rate limit is
    always such a refusal: the server checks the rate before it reads the frame, so a refused
    frame was never acted on.
    """

    frame: ClientFrame
    text: str
    future: asyncio.Future[ServerFrame]
    replay: bool
    job_id: str | None = None
    sent_generation: int = 0
    resend_safe: bool = False
    restore: bool = False
    attempts: int = 0
    retry_codes: frozenset[ErrorCode] = field(default_factory=frozenset)

    @property
    def written(self) -> bool:
        """Whether the frame may have reached the server since it was last known not to."""
        return self.sent_generation != 0

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

    def in_flight(self, generation: int) -> list[Call]:
        """Replay calls written on socket ``generation`` and not answered yet."""
        return [c for c in self._calls.values() if c.replay and c.sent_generation == generation]

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
