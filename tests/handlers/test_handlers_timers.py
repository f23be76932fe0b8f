"""The process-wide timer thread: cheap to arm and to call off; due callbacks run apart."""

from __future__ import annotations

import threading
import time
from typing import Any

from streamer_handlers._lambda.timers import TimerThread

WAIT = 5.0


def test_timers_run_in_order_of_their_due_time_not_of_arming():
    timers = TimerThread()
    ran: list[str] = []
    done = threading.Event()

    def note(name: str) -> None:
        ran.append(name)
        if len(ran) == 3:
            done.set()

    timers(0.15, lambda: note("late"))
    timers(0.05, lambda: note("early"))  # earlier than the head: wakes the thread
    timers(0.10, lambda: note("middle"))
    assert done.wait(WAIT)
    assert ran == ["early", "middle", "late"]


def test_a_called_off_timer_never_runs_and_cancel_after_running_is_harmless():
    timers = TimerThread()
    ran = threading.Event()
    off = timers(0.02, lambda: ran.set())
    off.cancel()
    marker = threading.Event()
    on = timers(0.05, marker.set)
    assert marker.wait(WAIT)
    assert not ran.is_set()
    on.cancel()
    on.cancel()
    assert timers.pending() == 0


def test_a_callback_that_blocks_holds_up_no_other_timer():
    timers = TimerThread()
    release = threading.Event()
    other = threading.Event()
    threads: list[threading.Thread] = []

    def block() -> None:
        threads.append(threading.current_thread())
        release.wait(WAIT)

    try:
        timers(0.0, block)
        timers(0.05, other.set)
        assert other.wait(WAIT)
    finally:
        release.set()
    assert threads
    assert threads[0] is not threading.current_thread()


def test_called_off_timers_do_not_pile_up():
    timers = TimerThread()
    keep = [timers(600, lambda: None) for _ in range(10)]
    for _ in range(5 * TimerThread.COMPACT_FLOOR):
        timers(600, lambda: None).cancel()
    assert timers.pending() == len(keep)
    assert len(timers._heap) <= 2 * TimerThread.COMPACT_FLOOR + len(keep)


def test_a_zero_delay_timer_runs_promptly_even_with_a_distant_one_ahead():
    timers = TimerThread()
    timers(600, lambda: None)
    fired = threading.Event()
    timers(0, fired.set)
    assert fired.wait(WAIT)


def test_a_forked_child_runs_its_own_timers():
    import os

    timers = TimerThread()
    timers(600, lambda: None)  # the parent's watching thread is running
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        fired = threading.Event()
        timers(0, fired.set)
        os.write(write, b"1" if fired.wait(WAIT) else b"0")
        os._exit(0)
    os.close(write)
    try:
        assert os.read(read, 1) == b"1"
    finally:
        os.close(read)
        os.waitpid(pid, 0)


def test_arming_after_the_heap_emptied_does_not_wake_the_thread_each_time():
    # The router arms a deadline per message and calls it off before the watching thread
    # runs again; the thread must not be woken for every one of them.
    timers = TimerThread()
    timers(30.0, lambda: None).cancel()  # starts the thread
    wakes = 0
    notify = timers._wake.notify

    def counting_notify(*args: Any) -> None:
        nonlocal wakes
        wakes += 1
        notify(*args)

    timers._wake.notify = counting_notify  # type: ignore[method-assign]
    for _ in range(20):
        time.sleep(0.002)  # the thread runs, finds the heap empty and goes back to sleep
        timers(30.0, lambda: None).cancel()
    assert wakes <= 1
    # A timer due earlier than the thread's wake-up still wakes it, and runs.
    ran = threading.Event()
    timers(0.01, ran.set)
    assert ran.wait(WAIT)
