"""Request ids that sort by creation time (ULIDs).

A request id doubles as the DynamoDB sort key of the requests table and as the
handle a client uses to ask for status, so it must be unique without
coordination and sort in creation order. A ULID gives both in 26 URL- and
key-safe characters: 48 bits of milliseconds since the epoch, then 80 bits that
start random and count up within one millisecond, so ids minted by one process
stay strictly increasing even when many share a millisecond or the wall clock
steps back.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable

__all__ = ["new_request_id"]

# Crockford base32: no I, L, O, U, so ids survive being read aloud or retyped.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Two characters per lookup halves the work of the per-id encoding loop.
_PAIRS = tuple(first + second for first in _ALPHABET for second in _ALPHABET)
_SHIFTS = tuple(range(120, -1, -10))
_RANDOM_BITS = 80
_RANDOM_LIMIT = 1 << _RANDOM_BITS


class _Generator:
    """Holds the last id's parts so the next id can be made strictly greater."""

    def __init__(
        self,
        clock_ns: Callable[[], int] = time.time_ns,
        random_bits: Callable[[int], int] = secrets.randbits,
    ) -> None:
        self._clock_ns = clock_ns
        self._random_bits = random_bits
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_random = 0

    def reset(self) -> None:
        # A forked child starts from its parent's state; without a reset both
        # would count up from the same value and mint identical ids.
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_random = 0

    def next_value(self) -> int:
        now_ms = self._clock_ns() // 1_000_000
        with self._lock:
            if now_ms > self._last_ms:
                ms, random = now_ms, self._random_bits(_RANDOM_BITS)
            else:
                # Same millisecond, or the clock stepped back: stay on the last
                # timestamp and count up, which keeps the order.
                ms, random = self._last_ms, self._last_random + 1
                if random >= _RANDOM_LIMIT:
                    ms, random = ms + 1, self._random_bits(_RANDOM_BITS)
            self._last_ms, self._last_random = ms, random
        return (ms << _RANDOM_BITS) | random


_GENERATOR = _Generator()


def _reset_after_fork() -> None:
    _GENERATOR.reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def new_request_id() -> str:
    """Mint a ULID: unique, and later ids from this process sort after earlier ones."""
    return _encode(_GENERATOR.next_value())


def _encode(value: int) -> str:
    # Fixed width, most significant digit first, alphabet in ASCII order: so
    # comparing two ids as strings compares their 128-bit values.
    return "".join([_PAIRS[(value >> shift) & 0x3FF] for shift in _SHIFTS])
