"""Time as the stores see it.

Every store takes a clock (epoch seconds as a float, like time.time) so that TTL expiry and
leases can be tested by moving time rather than by waiting for it.
"""

from __future__ import annotations

from collections.abc import Callable

Clock = Callable[[], float]


def epoch_ms(now: float) -> int:
    return int(now * 1000)


def is_live(expires_at: int | None, now: float) -> bool:
    """DynamoDB deletes expired items up to days late; until then they must read as absent."""
    return expires_at is None or expires_at > now
