"""Full-jitter exponential backoff, shared by every retry loop that talks to AWS.

Many Lambda instances retry the same throttled service at once; a delay drawn uniformly
between zero and an exponentially growing ceiling spreads those retries out instead of
sending them back in lockstep (AWS's "full jitter"). Core holds it because storage retries
too, and core cannot import the handlers.
"""

from __future__ import annotations

import random
from collections.abc import Callable


def full_jitter_delay(
    retry: int,
    *,
    base: float,
    cap: float,
    jitter: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry number ``retry`` (1 for the first retry).

    The ceiling doubles from ``base`` with each retry and never exceeds ``cap``;
    ``jitter`` returns a number in [0, 1) and is replaced by tests to pin the draw.
    """
    if retry < 1:
        raise ValueError("retry counts from 1")
    ceiling: float = min(cap, base * 2.0 ** (retry - 1))
    return ceiling * jitter()
