"""Fan-outs too large for one process: shards of subscribers, sent through the work queue.

A publish whose topic has at most :attr:`FanoutLimits.direct_max` subscribers is sent by
the publishing process itself (one query, then the posts: no queue hop). A larger one is
cut into shards of :attr:`FanoutLimits.shard_size` subscribers; each shard is one message
on the work queue (kind ``fanout``), and processor invocations send them in parallel.

**A shard's connections are checked, not trusted.** Anyone allowed to send to the queue can
write a shard message, so the processor looks up each connection a shard lists by its
subscription's key (connection, topic: one ``BatchGetItem`` per 100) and sends only to those
holding a live subscription to that topic in the shard's tenant. Whatever a shard says, it
reaches subscribers of that tenant's topic and nobody else: the audience a publish has
anyway. A retry is a shard listing the connections still owed.

**The rate bound.** API Gateway allows an account 10,000 requests per second per Region
(2,500 in some Regions), shared by every REST, HTTP and WebSocket API of the account,
WebSocket messages and connection setup included, and by every ``@connections`` call.
Shards may use at most half of it, :data:`SHARD_BUDGET_PER_SECOND`. Every post a processor
invocation makes for a fan-out passes one :class:`Pacer` of
:attr:`FanoutLimits.sends_per_second` (a bucket that starts empty, so a new invocation
brings no burst), and a function never runs more invocations at once than its reserved
concurrency, so shards never post faster than ``reserved concurrency x sends_per_second``
(plus one slice, a tenth of a second's worth, per invocation). The default is the budget
over the largest reserved concurrency of the deployment document (production's 100):
5,000 / 100 = 50 posts per second per invocation, which keeps dev (10 x 50 = 500/s) and
staging (50 x 50 = 2,500/s) under it too. A deployment that raises its concurrency must
lower the rate to match (``docs/fanout.md``).

**Nothing is dropped silently.** Throttled posts are retried by the sender with backoff;
connections still owed after that are queued again as a narrower shard after a delay
(:func:`queue_retry`), at most :data:`MAX_SHARD_ATTEMPTS` times in all, then counted as
undelivered. Clients drop an event whose id they have seen, so a shard that SQS delivers
twice costs posts, never a duplicate on screen.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streamer_core.backoff import full_jitter_delay

from streamer_handlers._delivery.management import DeliveryReport
from streamer_handlers._lambda.observability import count, logger
from streamer_handlers._lambda.settings import SettingsError
from streamer_handlers._lambda.settings import _integer as _env_integer
from streamer_handlers._lambda.settings import _number as _env_number

if TYPE_CHECKING:
    from streamer_core import EventFrame

    from streamer_handlers._lambda.runtime import Runtime

KIND_PUBLISH = "publish"
"""A publish request on the work queue: the documented entry point for any backend."""
KIND_FANOUT = "fanout"
"""One shard of a large fan-out, written by a publisher for the processor."""

ACCOUNT_RATE_PER_SECOND = 10_000
"""API Gateway's default throttle quota per account and Region (REST, HTTP, WebSocket APIs
and WebSocket callbacks together)."""
SHARD_BUDGET_PER_SECOND = ACCOUNT_RATE_PER_SECOND // 2
"""The share shards may use; the rest is for clients' messages, connection setup, progress
frames, small fan-outs and the account's other APIs."""
LARGEST_RESERVED_CONCURRENCY = 100
"""Production's reserved concurrency, the largest of the deployment document's profiles."""
DEFAULT_SENDS_PER_SECOND = SHARD_BUDGET_PER_SECOND / LARGEST_RESERVED_CONCURRENCY
DEFAULT_SHARD_SIZE = 100
"""Small enough that a fan-out of 100,000 makes a thousand shards, enough to keep every
processor invocation of a production deployment busy; large enough that a million
subscribers are ten thousand messages (a thousand batch requests)."""
DEFAULT_DIRECT_MAX = 1000
"""A topic this small is one query and is sent from the publisher at once; above it the
publisher's own process would hold a caller (a router invocation has 29 s) for too long."""
MAX_SHARD_ATTEMPTS = 5
"""Deliveries of one connection's share of an event: the first, then up to four retries."""
RETRY_DELAY_CAP_SECONDS = 60
FANOUT_UNDELIVERED = "FanoutUndelivered"

MAX_SHARD_CONNECTIONS = 1000
"""The most connections a shard message may list (a shard of the default size lists 100)."""
SQS_BATCH_ENTRIES = 10
SQS_BATCH_BYTES = 256 * 1024
"""SQS's limit on one message and on a whole batch (the queue's default maximum)."""
_QUEUE_ATTEMPTS = 3
_TOKEN_TOLERANCE = 1e-6
_SHORTEST_WAIT_SECONDS = 1e-3
_SQS_UNSAFE = re.compile("[\ud800-\udfff\ufffe\uffff]")
"""Characters SQS refuses in a message body; JSON escapes them instead."""


@dataclass(frozen=True)
class FanoutLimits:
    """How a fan-out is split and how fast its shards may be sent."""

    shard_size: int = DEFAULT_SHARD_SIZE
    direct_max: int = DEFAULT_DIRECT_MAX
    sends_per_second: float = DEFAULT_SENDS_PER_SECOND
    """Per processor invocation, shared by every record of its batch."""

    def __post_init__(self) -> None:
        if self.shard_size < 1:
            raise SettingsError("STREAMER_FANOUT_SHARD_SIZE must be at least 1")
        if self.direct_max < 0:
            raise SettingsError("STREAMER_FANOUT_DIRECT_MAX must be at least 0")
        if not self.sends_per_second > 0:
            raise SettingsError("STREAMER_FANOUT_SENDS_PER_SECOND must be above 0")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FanoutLimits:
        """Read at each use, not cached: three lookups cost nothing next to one query, and
        a stack or a test that changes the environment is seen at once."""
        env = os.environ if environ is None else environ
        return cls(
            shard_size=_env_integer(
                env, "STREAMER_FANOUT_SHARD_SIZE", DEFAULT_SHARD_SIZE, minimum=1
            ),
            direct_max=_env_integer(
                env, "STREAMER_FANOUT_DIRECT_MAX", DEFAULT_DIRECT_MAX, minimum=0
            ),
            sends_per_second=_env_number(
                env, "STREAMER_FANOUT_SENDS_PER_SECOND", DEFAULT_SENDS_PER_SECOND, minimum=1e-3
            ),
        )


class Pacer:
    """The rate bound of one invocation: a token bucket that starts empty and holds at
    most one slice of posts.

    Shared by the threads of one invocation's records; each asks for a slice and waits
    until the bucket holds that many tokens. Starting empty is what makes the bound hold for
    short invocations too: a bucket that started full would give every new invocation in
    the same execution environment a burst of its own, and a stream of invocations of one
    small shard each could post far above the rate. So in any interval of T seconds one
    invocation posts at most ``per_second x T`` plus one slice.
    """

    def __init__(
        self,
        per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not per_second > 0:
            raise ValueError("per_second must be above 0")
        self.per_second = per_second
        self.slice_size = max(1, min(500, int(per_second / 10)))
        """Posts taken per request to the bucket: a tenth of a second's worth, so a slow
        rate sends little bursts and a fast one keeps the sender's threads busy."""
        self.capacity = float(self.slice_size)
        self._clock = clock
        self._sleep = sleep
        self._tokens = 0.0
        self._updated = clock()
        self._lock = threading.Lock()

    def take(self, n: int) -> None:
        """Wait until ``n`` posts (at most the bucket's capacity) may be made, and take them."""
        need = min(float(n), self.capacity)
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(
                    self.capacity, self._tokens + (now - self._updated) * self.per_second
                )
                self._updated = now
                # The tolerance keeps rounding from turning the last sliver of a wait
                # into waits too short to move the clock.
                if self._tokens >= need - _TOKEN_TOLERANCE:
                    self._tokens = max(0.0, self._tokens - need)
                    return
                wait = (need - self._tokens) / self.per_second
            self._sleep(max(wait, _SHORTEST_WAIT_SECONDS))


def send_paced(
    runtime: Runtime,
    connection_ids: Sequence[str],
    data: str,
    pacer: Pacer | None,
    *,
    ends_at: float | None = None,
) -> tuple[DeliveryReport, tuple[str, ...]]:
    """Post ``data`` to the connections within the pacer's rate; also returns those not
    tried because the invocation reached ``ends_at`` (``time.monotonic``) first."""
    if pacer is None:
        return runtime.sender.send(connection_ids, data), ()
    delivered: list[str] = []
    gone: list[str] = []
    failed: list[str] = []
    position = 0
    while position < len(connection_ids):
        if ends_at is not None and time.monotonic() >= ends_at:
            break
        part = connection_ids[position : position + pacer.slice_size]
        pacer.take(len(part))
        report = runtime.sender.send(part, data)
        delivered += report.delivered
        gone += report.gone
        failed += report.failed
        position += len(part)
    report = DeliveryReport(delivered=tuple(delivered), gone=tuple(gone), failed=tuple(failed))
    return report, tuple(connection_ids[position:])


def _safe_json(body: Mapping[str, Any]) -> str:
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    if _SQS_UNSAFE.search(text):
        text = json.dumps(body, separators=(",", ":"))
    return text


def shard_body(
    tenant_id: str,
    topic: str,
    event: EventFrame,
    connection_ids: Sequence[str],
    *,
    attempt: int = 1,
) -> str:
    """The JSON of one ``fanout`` message (docs/fanout.md)."""
    body: dict[str, Any] = {
        "kind": KIND_FANOUT,
        "tenant": tenant_id,
        "topic": topic,
        "id": event.id,
        "published_at": event.published_at,
        "data": event.data,
        "connections": list(connection_ids),
        "attempt": attempt,
    }
    return _safe_json(body)


def publish_body(
    tenant_id: str, topic: str, data: Any = None, *, event_id: str | None = None
) -> str:
    """The JSON of one ``publish`` message, as any backend writes it."""
    body: dict[str, Any] = {"kind": KIND_PUBLISH, "tenant": tenant_id, "topic": topic, "data": data}
    if event_id is not None:
        body["id"] = event_id
    return _safe_json(body)


class ShardQueueError(RuntimeError):
    """Some shards could not be queued: their subscribers will not get the event."""


class ShardQueue:
    """Cuts subscriber ids into shards and queues them, up to ten per request."""

    def __init__(
        self,
        runtime: Runtime,
        tenant_id: str,
        topic: str,
        event: EventFrame,
        *,
        shard_size: int,
        attempt: int = 1,
        delay_seconds: int = 0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._runtime = runtime
        self._tenant_id = tenant_id
        self._topic = topic
        self._event = event
        self._shard_size = shard_size
        self._attempt = attempt
        self._delay = delay_seconds
        self._sleep = sleep
        self._ids: list[str] = []
        self._entries: list[str] = []
        self._entry_bytes = 0
        self.shards = 0
        """Shards queued so far."""
        self.connections = 0
        """Connections those shards cover."""

    def add(self, connection_ids: Iterable[str]) -> None:
        """Queue every full shard these ids complete; the rest waits for more or :meth:`close`."""
        self._ids.extend(connection_ids)
        while len(self._ids) >= self._shard_size:
            self._cut(self._ids[: self._shard_size])
            del self._ids[: self._shard_size]

    def close(self) -> None:
        """Queue the last, partial shard and everything not yet sent."""
        if self._ids:
            self._cut(self._ids)
            self._ids = []
        self._flush()

    def _cut(self, ids: Sequence[str]) -> None:
        body = shard_body(self._tenant_id, self._topic, self._event, ids, attempt=self._attempt)
        size = len(body.encode("utf-8"))
        if size > SQS_BATCH_BYTES:
            raise ShardQueueError(f"a shard message of {size} bytes is over SQS's limit")
        full = len(self._entries) == SQS_BATCH_ENTRIES
        if full or self._entry_bytes + size > SQS_BATCH_BYTES:
            self._flush()
        self._entries.append(body)
        self._entry_bytes += size
        self.connections += len(ids)

    def _flush(self) -> None:
        if not self._entries:
            return
        pending = {str(index): body for index, body in enumerate(self._entries)}
        queue_url = self._runtime.queue_url()
        for attempt in range(1, _QUEUE_ATTEMPTS + 1):
            entries = [
                {"Id": key, "MessageBody": body, "DelaySeconds": self._delay}
                for key, body in pending.items()
            ]
            response = self._runtime.sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
            for entry in response.get("Successful", []):
                pending.pop(str(entry.get("Id")), None)
            if not pending:
                break
            if attempt < _QUEUE_ATTEMPTS:
                self._sleep(full_jitter_delay(attempt, base=0.1, cap=1.0))
        self.shards += len(self._entries) - len(pending)
        self._entries = []
        self._entry_bytes = 0
        if pending:
            raise ShardQueueError(f"{len(pending)} shard message(s) could not be queued")


def retry_delay_seconds(attempt: int) -> int:
    """Seconds before retry number ``attempt`` of a shard is received: long enough for an
    account-wide throttle to clear, short enough for the event to still matter."""
    return max(1, math.ceil(full_jitter_delay(attempt, base=2.0, cap=RETRY_DELAY_CAP_SECONDS)))


def queue_retry(
    runtime: Runtime,
    tenant_id: str,
    topic: str,
    event: EventFrame,
    owed: Sequence[str],
    *,
    attempt: int,
    shard_size: int,
) -> int:
    """Queue ``owed`` (connections whose delivery failed or was not tried) as shards of
    attempt number ``attempt``; returns how many connections were queued.

    After the last attempt they are counted and logged as undelivered instead: an event is
    live news, and a connection that could not take it for a minute has stale state anyway
    (its client fetches what it needs after a reconnect).
    """
    if not owed:
        return 0
    if attempt > MAX_SHARD_ATTEMPTS:
        count(FANOUT_UNDELIVERED, len(owed))
        logger.error(
            "fan-out undelivered after every attempt",
            extra={"event_id": event.id, "topic": topic, "connections": len(owed)},
        )
        return 0
    queue = ShardQueue(
        runtime,
        tenant_id,
        topic,
        event,
        shard_size=shard_size,
        attempt=attempt,
        delay_seconds=retry_delay_seconds(attempt - 1),
    )
    queue.add(owed)
    queue.close()
    logger.info(
        "fan-out retry queued",
        extra={"event_id": event.id, "attempt": attempt, "connections": queue.connections},
    )
    return queue.connections
