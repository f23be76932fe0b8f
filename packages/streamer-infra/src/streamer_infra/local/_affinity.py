"""Keeping the local stack's threads on one CPU.

Every function of the local stack runs on a worker thread of one process, so they share
one GIL: at any moment one thread runs Python, wherever the threads are placed. What
spreading them over cores does buy is a cross-core wake-up on every hand-off (gateway to
worker, worker back to gateway, handler to the emulator's server thread), and on a virtual
machine that is an inter-processor interrupt, several times dearer than a hand-off on one
core (`benchmarks/README.md`). The other cores stay free for the clients, which is where a
developer's load comes from.

Work that releases the GIL for long (numpy, compression in C) would lose its parallelism,
so `streamer dev --no-pin-cpu` leaves placement to the kernel.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["pin_to_one_cpu"]


def _current_cpu() -> int | None:
    """The CPU this process last ran on (field 39 of /proc/self/stat), if Linux says."""
    try:
        stat = Path("/proc/self/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    # Field 39 overall is the 37th after "pid (comm)".
    return int(fields[36]) if len(fields) > 36 and fields[36].isdigit() else None


def pin_to_one_cpu() -> int | None:
    """Put every thread of this process, and those it starts later, on one allowed CPU.

    Answers the CPU, or None where the platform cannot set affinity (not Linux) or only
    one CPU is allowed anyway.
    """
    setaffinity = getattr(os, "sched_setaffinity", None)
    getaffinity = getattr(os, "sched_getaffinity", None)
    if setaffinity is None or getaffinity is None:
        return None
    allowed = getaffinity(0)
    if len(allowed) <= 1:
        return None
    current = _current_cpu()
    cpu = current if current in allowed else min(allowed)
    tasks = Path("/proc/self/task")
    tids = [int(entry.name) for entry in tasks.iterdir()] if tasks.is_dir() else [0]
    for tid in tids:
        # A thread may end between the listing and the call.
        with contextlib.suppress(ProcessLookupError):
            setaffinity(tid, {cpu})
    return cpu
