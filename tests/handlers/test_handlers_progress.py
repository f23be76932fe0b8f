"""ProgressReporter: coalescing, ordering and cancellation, with an injected clock."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from streamer_core import ProgressFrame
from streamer_handlers import Cancelled, ProgressReporter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Timers:
    def __init__(self) -> None:
        self.pending: list[tuple[float, Callable[[], None], list[bool]]] = []

    def __call__(self, delay: float, callback: Callable[[], None]) -> Handle:
        flag = [False]
        self.pending.append((delay, callback, flag))
        return Handle(flag)

    def fire(self) -> None:
        pending, self.pending = self.pending, []
        for _, callback, cancelled in pending:
            if not cancelled[0]:
                callback()


class Handle:
    def __init__(self, flag: list[bool]) -> None:
        self.flag = flag

    def cancel(self) -> None:
        self.flag[0] = True


def _reporter(
    per_second: float = 10, stop_after: int | None = None, start_seq: int = 0
) -> tuple[ProgressReporter, list[ProgressFrame], Clock, Timers]:
    sent: list[ProgressFrame] = []
    clock = Clock()
    timers = Timers()

    def emit(frame: ProgressFrame) -> bool:
        sent.append(frame)
        return stop_after is not None and len(sent) >= stop_after

    reporter = ProgressReporter(
        "req", emit, per_second=per_second, start_seq=start_seq, clock=clock, schedule=timers
    )
    return reporter, sent, clock, timers


def test_first_report_goes_out_at_once_and_the_next_waits_for_the_interval():
    reporter, sent, clock, timers = _reporter()
    reporter.report(1, "a")
    reporter.report(2, "b")
    assert [f.percentage for f in sent] == [1]
    assert len(timers.pending) == 1
    assert timers.pending[0][0] == pytest.approx(0.1)
    clock.now += 0.1
    reporter.report(3, "c")
    assert [(f.percentage, f.seq) for f in sent] == [(1, 1), (3, 2)]


def test_newest_held_report_wins():
    reporter, sent, clock, timers = _reporter()
    reporter.report(1)
    for value in (2, 3, 4):
        reporter.report(value, f"m{value}", value=value)
    clock.now += 0.05
    timers.fire()
    assert [(f.percentage, f.message, f.metadata, f.seq) for f in sent] == [
        (1, None, {}, 1),
        (4, "m4", {"value": 4}, 2),
    ]


def test_hundred_percent_is_never_held_back():
    reporter, sent, _, timers = _reporter()
    reporter.report(10)
    reporter.report(100, "done")
    assert [f.percentage for f in sent] == [10, 100]
    timers.fire()
    assert len(sent) == 2


def test_finish_flushes_what_is_held_and_ignores_later_reports():
    reporter, sent, _, timers = _reporter()
    reporter.report(10)
    reporter.report(60)
    reporter.finish()
    assert [f.percentage for f in sent] == [10, 60]
    assert all(flag[0] for _, _, flag in timers.pending)
    reporter.report(70)
    assert len(sent) == 2


def test_finish_without_flush_drops_the_held_report():
    reporter, sent, _, _ = _reporter()
    reporter.report(10)
    reporter.report(60)
    reporter.finish(flush=False)
    assert [f.percentage for f in sent] == [10]


def test_rate_is_bounded_per_second():
    reporter, sent, clock, timers = _reporter(per_second=5)
    for step in range(1000):
        clock.now = 100.0 + step / 1000
        reporter.report(step / 10)
        if timers.pending and clock.now >= 100.0 + 0.2 * (len(sent)):
            timers.fire()
    reporter.finish()
    assert 5 <= len(sent) <= 5 + 2
    assert sent[-1].percentage == pytest.approx(99.9)


def test_seq_strictly_increases_and_continues_from_a_previous_attempt():
    reporter, sent, clock, _ = _reporter(start_seq=7)
    for value in range(5):
        reporter.report(value)
        clock.now += 1
    assert [f.seq for f in sent] == [8, 9, 10, 11, 12]
    assert reporter.seq == 12


def test_cancel_raises_from_the_report_that_saw_it_and_after():
    reporter, sent, clock, _ = _reporter(stop_after=2)
    reporter.report(1)
    clock.now += 1
    with pytest.raises(Cancelled):
        reporter.report(2)
    assert reporter.cancelled
    with pytest.raises(Cancelled):
        reporter.report(3)
    assert len(sent) == 2


def test_cancel_seen_by_a_timer_flush_raises_at_the_next_report():
    reporter, _sent, _, timers = _reporter(stop_after=2)
    reporter.report(1)
    reporter.report(2)
    timers.fire()
    with pytest.raises(Cancelled):
        reporter.report(3)


def test_values_are_clamped_and_checked():
    reporter, sent, clock, _ = _reporter()
    reporter.report(-5)
    clock.now += 1
    reporter.report(250)
    assert [f.percentage for f in sent] == [0, 100]
    with pytest.raises(ValueError, match="NaN"):
        reporter.report(math.nan)
    with pytest.raises(TypeError):
        reporter.report(5, "m", blob=object())
    with pytest.raises(TypeError):
        reporter.report(5, 7)  # type: ignore[arg-type]


def test_a_failing_store_does_not_stop_the_action():
    clock = Clock()

    def emit(frame: ProgressFrame) -> bool:
        raise RuntimeError("dynamodb unavailable")

    reporter = ProgressReporter("req", emit, clock=clock, schedule=Timers())
    reporter.report(10)
    assert reporter.seq == 1


def test_only_the_first_hundred_percent_skips_coalescing():
    reporter, sent, clock, timers = _reporter()
    reporter.report(100, "writing")
    reporter.report(100, "uploading")
    reporter.report(100, "cleaning up")
    assert [f.message for f in sent] == ["writing"]
    clock.now += 0.1
    timers.fire()
    assert [f.message for f in sent] == ["writing", "cleaning up"]


def test_a_report_that_could_not_be_recorded_is_retried_by_finish():
    clock = Clock()
    sent: list[ProgressFrame] = []
    failures = [RuntimeError("throttled")]

    def emit(frame: ProgressFrame) -> bool:
        if failures:
            raise failures.pop()
        sent.append(frame)
        return False

    reporter = ProgressReporter("req", emit, clock=clock, schedule=Timers())
    reporter.report(100, "done")
    assert sent == []
    reporter.finish()
    assert [(f.percentage, f.message) for f in sent] == [(100, "done")]
    assert sent[0].seq == 2  # the failed attempt may have been stored under seq 1
    assert reporter.last_frame == sent[0]


def test_a_newer_report_replaces_one_that_could_not_be_recorded():
    clock = Clock()
    sent: list[ProgressFrame] = []
    failures = [RuntimeError("throttled")]

    def emit(frame: ProgressFrame) -> bool:
        if failures:
            raise failures.pop()
        sent.append(frame)
        return False

    timers = Timers()
    reporter = ProgressReporter("req", emit, clock=clock, schedule=timers)
    reporter.report(40)
    reporter.report(60)
    reporter.finish()
    assert [f.percentage for f in sent] == [60]
