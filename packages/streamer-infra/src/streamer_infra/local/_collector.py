"""Garbage-collector thresholds for the long-running `streamer dev` process.

CPython's defaults, (700, 10, 10), suit short scripts. The local stack is a server: it keeps
a heap that lives as long as the process (moto's tables, boto3's and pydantic's models, a set
of objects per open socket) and allocates in bursts (a large subscriber query builds tens of
thousands of short-lived objects). At the defaults such a burst runs many young collections,
each promoting whatever is alive at that moment, and every so often a full collection walks
the whole heap, with many sockets open long enough to show inside a fan-out. Collecting the
young generation every 50,000 net allocations, and each older one after 20 collections of
the one below, makes full collections rare without leaving much garbage: whatever is not in a
cycle is still freed at once by reference counting.

`hatch run bench:all --only fanout` records what the collector did in the stack process (the
`collector` entry of its JSON); `benchmarks/README.md` has the figures at both settings.
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
