"""The per-connection rate limit, counted in memory against budgets reserved in DynamoDB.

A container reserves a chunk of a connection's window with one conditional write and spends
it from memory, so the limit holds across every container while most messages touch no
table; a spent window is remembered, so refusals cost nothing. Why this is safe, how chunks
grow and what it costs: ``docs/rate-limit.md``.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

DEFAULT_MAX_ENTRIES = 10_000
"""Connections whose budgets one container remembers; an evicted one just reserves again."""
MAX_DEFAULT_CHUNK = 10
"""Largest chunk reserved by default, so few units are stranded in an idle container."""


class RateReserver(Protocol):
    """What a budget needs from storage: :meth:`ConnectionStore.reserve_rate`."""

    def reserve_rate(
        self,
        connection_id: str,
        *,
        limit: int,
        window_seconds: int = 60,
        want: int = 1,
        expect_new_window: bool = False,
    ) -> int: ...


class Verdict(Enum):
    """What the budget says about one message."""

    ALLOWED = "allowed"
    LIMITED = "limited"
    """The connection's window is used up, as the table said: refuse with RATE_LIMITED."""
    REFUSED = "refused"
    """Nothing granted, and the table did not say the window is used up: the connection
    may be unknown or expired (the caller reads it to tell)."""


def largest_chunk(limit: int) -> int:
    """The most one reservation grows to: a tenth of the limit (never below the default)."""
    return max(default_chunk(limit), limit // 10)


def default_chunk(limit: int) -> int:
    """A tenth of the limit, between 1 and :data:`MAX_DEFAULT_CHUNK`.

    Small limits get a chunk of 1, so a limit of a few messages is counted exactly; large
    ones stop at 10, where the write is already shared by ten messages and a bigger chunk
    would mostly strand more units in idle containers.
    """
    return max(1, min(MAX_DEFAULT_CHUNK, limit // 10))


@dataclass
class _Entry:
    """Units reserved in DynamoDB for one connection and window, not yet spent here."""

    window: int
    window_seconds: int
    limit: int
    remaining: int
    chunk: int
    """Size of the last reservation asked for in this window; the next one doubles it."""
    spent: bool = False
    """The table refused because this window is used up: refuse without asking again."""

    def serves(self, window: int, window_seconds: int, limit: int) -> bool:
        # A changed limit or window length invalidates what was reserved under the old one.
        return (self.window, self.window_seconds, self.limit) == (window, window_seconds, limit)


class RateBudget:
    """One container's reserved, unspent rate-limit units, per connection. Thread-safe.

    The lock guards only memory; the reservation itself runs outside it, so a slow
    DynamoDB call for one connection never holds up the messages of another. Two threads
    that both find a connection's budget empty both reserve; their grants are added
    together, so nothing is wasted and the table still bounds the total.
    """

    def __init__(self, store: RateReserver, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._store = store
        self._max_entries = max_entries
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def take(
        self,
        connection_id: str,
        *,
        limit: int,
        window_seconds: int,
        now: float,
        chunk: int | None = None,
    ) -> bool:
        """Spend one unit for a message at ``now``; False when the connection may not send.

        False means the window's budget is spent across all containers, or the connection
        is unknown or expired; :meth:`check` tells the two apart when the store can.
        """
        verdict = self.check(
            connection_id, limit=limit, window_seconds=window_seconds, now=now, chunk=chunk
        )
        return verdict is Verdict.ALLOWED

    def check(
        self,
        connection_id: str,
        *,
        limit: int,
        window_seconds: int,
        now: float,
        chunk: int | None = None,
    ) -> Verdict:
        """Spend one unit for a message at ``now``, or say why the message is refused."""
        if limit < 1 or window_seconds < 1:
            raise ValueError("limit and window_seconds must be at least 1")
        if chunk is not None and chunk < 1:
            raise ValueError("chunk must be at least 1")
        window = math.floor(now / window_seconds) * window_seconds
        with self._lock:
            entry = self._entries.get(connection_id)
            known = entry is not None and entry.serves(window, window_seconds, limit)
            if entry is not None and known:
                self._entries.move_to_end(connection_id)
                if entry.remaining > 0:
                    entry.remaining -= 1
                    return Verdict.ALLOWED
                if entry.spent:
                    return Verdict.LIMITED
        if chunk is not None:
            want = chunk
        elif entry is not None and known:
            want = min(entry.chunk * 2, largest_chunk(limit))
        else:
            want = default_chunk(limit)
        want = min(want, limit)
        granted, spent = self._reserve(connection_id, limit, window_seconds, want, not known)
        if granted < 1:
            if spent:
                with self._lock:
                    self._mark_spent(connection_id, window, window_seconds, limit, now)
                return Verdict.LIMITED
            return Verdict.REFUSED
        with self._lock:
            self._keep(connection_id, window, window_seconds, limit, granted - 1, want, now)
        return Verdict.ALLOWED

    def _reserve(
        self, connection_id: str, limit: int, window_seconds: int, want: int, new_window: bool
    ) -> tuple[int, bool]:
        """Units granted, and whether a refusal means the window is used up.

        A store that cannot say why it refused (one with only ``reserve_rate``) is never
        taken to mean "used up", so the caller still reads the connection.
        """
        take_rate: Any = getattr(self._store, "take_rate", None)
        if take_rate is None:
            granted = self._store.reserve_rate(
                connection_id,
                limit=limit,
                window_seconds=window_seconds,
                want=want,
                expect_new_window=new_window,
            )
            return granted, False
        grant = take_rate(
            connection_id,
            limit=limit,
            window_seconds=window_seconds,
            want=want,
            # No reservation of ours in this window: most likely nobody has opened it yet.
            expect_new_window=new_window,
        )
        return int(grant.units), bool(grant.spent)

    def _mark_spent(
        self, connection_id: str, window: int, window_seconds: int, limit: int, now: float
    ) -> None:
        """Remember that this window is used up; called with the lock held."""
        entry = self._entries.get(connection_id)
        if entry is not None and entry.serves(window, window_seconds, limit):
            if entry.remaining == 0:
                entry.spent = True
            self._entries.move_to_end(connection_id)
        elif entry is None or entry.window < window:
            self._entries[connection_id] = _Entry(window, window_seconds, limit, 0, 1, True)
            self._entries.move_to_end(connection_id)
        self._prune(now)

    def _keep(
        self,
        connection_id: str,
        window: int,
        window_seconds: int,
        limit: int,
        units: int,
        asked: int,
        now: float,
    ) -> None:
        """Bank ``units`` for later messages; called with the lock held."""
        entry = self._entries.get(connection_id)
        if entry is not None and entry.serves(window, window_seconds, limit):
            entry.remaining += units
            entry.chunk = max(entry.chunk, asked)
            self._entries.move_to_end(connection_id)
        elif entry is not None and entry.window > window:
            # A later window is already banked (another thread's clock read moved on):
            # units of an earlier window must not be spent in it.
            return
        else:
            # Kept even when empty: it records that this window is open, so the next
            # reservation adds to the count instead of first trying to reset it.
            self._entries[connection_id] = _Entry(window, window_seconds, limit, units, asked)
            self._entries.move_to_end(connection_id)
        self._prune(now)

    def _prune(self, now: float) -> None:
        """Drop entries of windows that have ended, oldest use first, then cap the count.

        Entries are ordered by last use and a use always falls inside its entry's window,
        so ended windows gather at the front and the sweep stops at the first live one.
        """
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if oldest.window + oldest.window_seconds > now:
                break
            self._entries.popitem(last=False)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)


_budgets: weakref.WeakKeyDictionary[RateReserver, RateBudget] = weakref.WeakKeyDictionary()
_budgets_lock = threading.Lock()


def budget_for(store: RateReserver) -> RateBudget:
    """The process's budget for ``store``, created on first use.

    Keyed by the store object, so a warm container keeps its budgets across invocations
    while a rebuilt runtime (other tables, as in tests and the local stack) starts empty.
    """
    with _budgets_lock:
        budget = _budgets.get(store)
        if budget is None:
            budget = RateBudget(store)
            _budgets[store] = budget
        return budget
