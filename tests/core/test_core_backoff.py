"""Full-jitter backoff: the ceiling doubles per retry up to the cap, the draw is uniform."""

from __future__ import annotations

import pytest
from streamer_core.backoff import full_jitter_delay


@pytest.mark.parametrize(
    ("retry", "ceiling"), [(1, 0.05), (2, 0.1), (3, 0.2), (4, 0.4), (6, 1.0), (30, 1.0)]
)
def test_the_ceiling_doubles_per_retry_and_stops_at_the_cap(retry: int, ceiling: float) -> None:
    delay = full_jitter_delay(retry, base=0.05, cap=1.0, jitter=lambda: 1.0)
    assert delay == pytest.approx(ceiling)


def test_the_delay_is_the_jitter_share_of_the_ceiling() -> None:
    assert full_jitter_delay(3, base=0.05, cap=1.0, jitter=lambda: 0.5) == pytest.approx(0.1)
    assert full_jitter_delay(3, base=0.05, cap=1.0, jitter=lambda: 0.0) == 0.0


def test_default_jitter_stays_within_the_ceiling() -> None:
    delays = [full_jitter_delay(2, base=0.05, cap=1.0) for _ in range(200)]
    assert all(0.0 <= d < 0.1 for d in delays)
    assert len(set(delays)) > 1


def test_retries_count_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        full_jitter_delay(0, base=0.05, cap=1.0)
