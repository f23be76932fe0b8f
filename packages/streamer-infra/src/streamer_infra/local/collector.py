"""Garbage-collector thresholds for the long-running `streamer dev` process.

CPython's defaults, (700, 10, 10), suit short scripts. The local stack is a server: it keeps
a heap that lives as long as the process (moto's tables, boto3's and pydantic's models, a set
of objects per open socket) and allocates in bursts (a 1,000-item subscriber query builds
about 10^5 short-lived objects). At the defaults such a burst runs over a hundred young
collections, each promoting whatever is alive at that moment, and every so often a full
collection walks the whole heap: with 1,000 sockets open that takes 100-200 ms, landing
inside one fan-out in a few. Collecting the young generation every 50,000 net allocations, and
each older one after 20 collections of the one below, makes full collections rare without
leaving much garbage: whatever is not in a cycle is still freed at once by reference
counting.

Measured in the fan-out benchmark's stack process (`hatch run bench:all --only fanout`, the
`collector` entry of its JSON; `server_gc=False` in `benchmarks/stack_server.py` for the
defaults), over six publishes to 1,000 subscribers: at the defaults,
three full collections took 466 ms (the longest 188 ms, inside a subscriber query); at these
thresholds, three young collections took 50 ms (the longest 33 ms) and no full one ran.
"""

from __future__ import annotations

import gc

__all__ = ["SERVER_THRESHOLDS", "server_thresholds"]

SERVER_THRESHOLDS = (50_000, 20, 20)


def server_thresholds() -> tuple[int, int, int]:
    """Set the thresholds for a long-running server; answers the ones they replace."""
    previous = gc.get_threshold()
    gc.set_threshold(*SERVER_THRESHOLDS)
    return previous
