"""A stand-in for the X-Ray daemon: receives the segments the functions' tracer sends over UDP.

On AWS the X-Ray SDK sends every finished (sub)segment as a UDP datagram to the daemon at
``AWS_XRAY_DAEMON_ADDRESS``; nothing is ever read back. Receiving them locally means the
tracing path of the handlers (tracer creation, subsegments, the emitter) runs in the local
stack exactly as it runs on AWS, and a developer can see what each invocation traced.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["TraceSegment", "XRaySink"]

logger = logging.getLogger("streamer.local.xray")

_HEADER = b'{"format":'


@dataclass(frozen=True)
class TraceSegment:
    """One received segment or subsegment: what `streamer dev --traces` shows."""

    trace_id: str
    name: str
    start_time: float
    end_time: float | None
    kind: str
    error: bool

    @property
    def duration_ms(self) -> float | None:
        return None if self.end_time is None else (self.end_time - self.start_time) * 1000

    def describe(self) -> str:
        duration = self.duration_ms
        took = "in progress" if duration is None else f"{duration:.1f} ms"
        failed = "  (error)" if self.error else ""
        return f"trace {self.trace_id}  {self.name}  {took}{failed}"


def parse_datagram(data: bytes) -> list[TraceSegment]:
    """The daemon's wire format: a JSON header line, then one segment document.

    A segment may carry its subsegments nested; each becomes a `TraceSegment` of its own.
    """
    if not data.startswith(_HEADER) or b"\n" not in data:
        return []
    _, _, body = data.partition(b"\n")
    try:
        document = json.loads(body)
    except ValueError:
        return []
    found: list[TraceSegment] = []
    _collect(document, document.get("trace_id", ""), found)
    return found


def _collect(document: Any, trace_id: str, found: list[TraceSegment]) -> None:
    if not isinstance(document, dict) or "name" not in document:
        return
    start = document.get("start_time")
    if not isinstance(start, int | float):
        return
    end = document.get("end_time")
    found.append(
        TraceSegment(
            trace_id=str(document.get("trace_id") or trace_id),
            name=str(document["name"]),
            start_time=float(start),
            end_time=float(end) if isinstance(end, int | float) else None,
            kind=str(document.get("type") or "segment"),
            error=bool(document.get("error") or document.get("fault")),
        )
    )
    for child in document.get("subsegments") or ():
        _collect(child, trace_id, found)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, sink: XRaySink) -> None:
        self._sink = sink

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._sink.receive(data)


class XRaySink:
    """Listens on a loopback UDP port; keeps the latest segments and hands each to `on_segment`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        keep: int = 1000,
        on_segment: Callable[[TraceSegment], None] | None = None,
    ) -> None:
        self._host = host
        self._transport: asyncio.DatagramTransport | None = None
        self._port = 0
        self.segments: deque[TraceSegment] = deque(maxlen=keep)
        self.datagrams = 0
        self._on_segment = on_segment

    @property
    def address(self) -> str:
        """The value for ``AWS_XRAY_DAEMON_ADDRESS``."""
        if self._transport is None:
            raise RuntimeError("the X-Ray sink is not running")
        return f"{self._host}:{self._port}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self._host, 0)
        )
        self._transport = transport
        self._port = transport.get_extra_info("sockname")[1]

    def receive(self, data: bytes) -> None:
        self.datagrams += 1
        for segment in parse_datagram(data):
            self.segments.append(segment)
            if self._on_segment is not None:
                try:
                    self._on_segment(segment)
                except Exception:
                    logger.exception("showing a trace segment failed")

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
