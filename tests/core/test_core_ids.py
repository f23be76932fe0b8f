"""Request ids: ULIDs that never collide and sort in creation order."""

from __future__ import annotations

import os
import re
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from streamer_core import _ids as ids
from streamer_core._ids import new_request_id
from streamer_core.protocol import ID_PATTERN

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
VALUES_128 = st.integers(min_value=0, max_value=2**128 - 1)
ULID = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")


def decode(ulid: str) -> tuple[int, int]:
    """Split an id back into (milliseconds, 80-bit counter)."""
    value = 0
    for char in ulid:
        value = value * 32 + ALPHABET.index(char)
    return value >> 80, value & ((1 << 80) - 1)


class FrozenClock:
    """Wall-clock nanoseconds that only move when a test moves them."""

    def __init__(self) -> None:
        self.ns = 1_800_000_000_123 * 1_000_000

    def __call__(self) -> int:
        return self.ns

    def step_ms(self, ms: int) -> None:
        self.ns += ms * 1_000_000


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    """Installs a generator of our own on a frozen clock, so no state leaks between tests."""
    frozen = FrozenClock()
    monkeypatch.setattr(ids, "_GENERATOR", ids._Generator(clock_ns=frozen))
    return frozen


def test_format_is_a_ulid_and_a_valid_request_id() -> None:
    request_id = new_request_id()
    assert ULID.fullmatch(request_id)
    assert re.fullmatch(ID_PATTERN, request_id)


def test_timestamp_part_is_the_wall_clock_in_ms(clock: FrozenClock) -> None:
    assert decode(new_request_id())[0] == 1_800_000_000_123


def test_hundred_thousand_ids_are_unique_and_sorted_in_creation_order() -> None:
    minted = [new_request_id() for _ in range(100_000)]
    assert len(set(minted)) == len(minted)
    assert minted == sorted(minted)


def test_same_millisecond_counts_up_by_one(clock: FrozenClock) -> None:
    first, second, third = (decode(new_request_id()) for _ in range(3))
    assert first[0] == second[0] == third[0]
    assert second[1] == first[1] + 1
    assert third[1] == second[1] + 1


def test_clock_stepping_back_keeps_the_order(clock: FrozenClock) -> None:
    before = new_request_id()
    clock.step_ms(-5_000)
    after = new_request_id()
    assert after > before
    assert decode(after)[0] == decode(before)[0]


def test_next_millisecond_starts_a_fresh_random_part(clock: FrozenClock) -> None:
    before = new_request_id()
    clock.step_ms(1)
    after = new_request_id()
    assert after > before
    assert decode(after)[0] == decode(before)[0] + 1


def test_counter_overflow_moves_to_the_next_millisecond(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    generator = ids._Generator(clock_ns=FrozenClock(), random_bits=lambda bits: (1 << bits) - 1)
    monkeypatch.setattr(ids, "_GENERATOR", generator)
    before = new_request_id()
    after = new_request_id()
    assert after > before
    assert decode(after)[0] == decode(before)[0] + 1


def test_ids_from_many_threads_never_collide() -> None:
    results: list[list[str]] = [[] for _ in range(8)]

    def mint(into: list[str]) -> None:
        into.extend(new_request_id() for _ in range(5_000))

    threads = [threading.Thread(target=mint, args=(bucket,)) for bucket in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [request_id for bucket in results for request_id in bucket]
    assert len(set(everything)) == len(everything)
    for bucket in results:
        assert bucket == sorted(bucket)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_does_not_repeat_the_parents_next_id(clock: FrozenClock) -> None:
    # With the clock frozen, a child that inherited the counter would mint
    # exactly the id the parent mints next.
    new_request_id()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        os.write(write_end, new_request_id().encode())
        os._exit(0)
    os.close(write_end)
    child_id = os.read(read_end, 64).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    assert ULID.fullmatch(child_id)
    assert child_id != new_request_id()


def test_real_clock_ids_carry_the_current_time() -> None:
    before = time.time_ns() // 1_000_000
    stamp = decode(new_request_id())[0]
    after = time.time_ns() // 1_000_000
    assert before <= stamp <= after + 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=-3, max_value=3), max_size=60))
def test_ids_increase_whatever_the_clock_does(steps: list[int]) -> None:
    clock = FrozenClock()
    generator = ids._Generator(clock_ns=clock)
    minted = []
    for step in steps:
        clock.step_ms(step)
        minted.append(ids._encode(generator.next_value()))
    assert minted == sorted(set(minted))


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=0, max_value=2**128 - 1), st.integers(min_value=0, max_value=2**128 - 1)
)
def test_encoding_is_reversible_and_keeps_the_order(first: int, second: int) -> None:
    encoded_first, encoded_second = ids._encode(first), ids._encode(second)
    assert ULID.fullmatch(encoded_first)
    ms, counter = decode(encoded_first)
    assert (ms << 80) | counter == first
    assert (encoded_first < encoded_second) == (first < second)
