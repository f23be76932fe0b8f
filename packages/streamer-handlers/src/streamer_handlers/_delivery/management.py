"""Delivering frames to connections through the API Gateway Management API.

A fan-out to thousands of subscribers must not be a loop of sequential HTTPS calls, so
sends run on a shared thread pool with one shared boto3 client (clients are thread-safe;
creating one costs ~85 ms, so it is made once, on first use). ``410 Gone`` means the
socket is closed: the connection and its subscriptions are pruned at once and never
retried. Server errors are retried a bounded number of times with full jitter, so a burst
of retries from many workers does not hit the service in lockstep. Throttling (429:
``LimitExceededException``, ``TooManyRequestsException``) has a budget of its own, longer
and with longer waits: the quota is the account's, shared with every other sender, and a
thread that waits also slows its whole fan-out down, which is what the quota asks for.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from streamer_core.backoff import full_jitter_delay

from streamer_handlers._lambda.observability import STALE_CONNECTIONS_PRUNED, count, logger

if TYPE_CHECKING:
    # Loaded with the first fan-out: `$connect` imports this module (through `publish`)
    # but never sends.
    from concurrent.futures import ThreadPoolExecutor

_GONE_CODES = frozenset({"GoneException"})
_FINAL_CODES = frozenset(
    {"ForbiddenException", "PayloadTooLargeException", "BadRequestException", "ValidationException"}
)
_THROTTLE_CODES = frozenset(
    {"LimitExceededException", "TooManyRequestsException", "ThrottlingException", "Throttling"}
)


@dataclass(frozen=True)
class DeliveryReport:
    """Which connections got the frame, which are gone for good, which failed after retries.

    A fan-out too large to send from one process is handed to the processor instead:
    ``queued`` connections in ``shards`` messages on the work queue, delivered shortly after
    the report (and so in none of the three tuples).
    """

    delivered: tuple[str, ...] = ()
    gone: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    queued: int = 0
    shards: int = 0


class Sender(Protocol):
    """Anything that can post one frame to a set of connections (the test seam)."""

    def send(self, connection_ids: Sequence[str], data: str) -> DeliveryReport:
        """Post ``data`` to every connection; never raises for a single bad connection."""
        ...


class Outcome(Enum):
    """What one connection's delivery came to."""

    DELIVERED = "delivered"
    GONE = "gone"
    FAILED = "failed"


def prune(on_gone: Callable[[str], None] | None, connection_id: str) -> None:
    """Forget a connection that answered 410; a failing prune is logged, never raised."""
    if on_gone is None:
        return
    try:
        on_gone(connection_id)
    except Exception:
        logger.exception("pruning a gone connection failed", extra={"connection_id": connection_id})


def settle(
    connection_ids: Sequence[str],
    outcomes: Sequence[Outcome],
    on_gone: Callable[[str], None] | None = None,
) -> DeliveryReport:
    """Report every outcome, count the gone connections and prune them through ``on_gone``.

    Shared by every :class:`Sender`, whatever carries the frames, so a 410 means the same
    report and the same metric everywhere. A sender that already pruned while sending (the
    management sender does, on its worker threads, so a 410 storm is cleaned up in
    parallel) passes no ``on_gone``.
    """
    grouped: dict[Outcome, list[str]] = {o: [] for o in Outcome}
    for connection_id, outcome in zip(connection_ids, outcomes, strict=True):
        grouped[outcome].append(connection_id)
    gone = grouped[Outcome.GONE]
    if gone:
        count(STALE_CONNECTIONS_PRUNED, len(gone))
        for connection_id in gone:
            prune(on_gone, connection_id)
    return DeliveryReport(
        delivered=tuple(grouped[Outcome.DELIVERED]),
        gone=tuple(gone),
        failed=tuple(grouped[Outcome.FAILED]),
    )


def _error_code(error: Exception) -> tuple[str, int]:
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return "", 0
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


class ManagementSender:
    """The production :class:`Sender`: boto3 ``apigatewaymanagementapi`` ``post_to_connection``.

    ``endpoint_url`` is ``https://{domain}/{stage}`` from configuration, never derived from
    the event: behind a custom domain the event's domain is not the management endpoint.
    ``on_gone`` is called once per connection that answered 410, from a worker thread.
    """

    def __init__(
        self,
        endpoint_url: str | None,
        *,
        client: Any | None = None,
        on_gone: Callable[[str], None] | None = None,
        max_workers: int = 32,
        max_attempts: int = 4,
        base_delay: float = 0.05,
        max_delay: float = 1.0,
        throttled_attempts: int = 8,
        throttled_base_delay: float = 0.1,
        throttled_max_delay: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if client is None and not endpoint_url:
            raise ValueError("STREAMER_MANAGEMENT_ENDPOINT is not set: cannot reach any connection")
        if max_attempts < 1 or throttled_attempts < 1:
            raise ValueError("max_attempts and throttled_attempts must be at least 1")
        self._endpoint_url = endpoint_url
        self._client = client
        self._on_gone = on_gone
        self._max_workers = max_workers
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._throttled_attempts = throttled_attempts
        self._throttled_base_delay = throttled_base_delay
        self._throttled_max_delay = throttled_max_delay
        self._sleep = sleep
        self._jitter = jitter
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    @property
    def client(self) -> Any:
        """The shared boto3 client, created on first use."""
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                self._client = boto3.session.Session().client(
                    "apigatewaymanagementapi",
                    endpoint_url=self._endpoint_url,
                    config=Config(
                        retries={"total_max_attempts": 1},
                        max_pool_connections=self._max_workers,
                        connect_timeout=2,
                        read_timeout=5,
                    ),
                )
            return self._client

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(
                    max_workers=self._max_workers, thread_name_prefix="streamer-send"
                )
            return self._pool

    def send(self, connection_ids: Sequence[str], data: str) -> DeliveryReport:
        """Post ``data`` to each connection concurrently and report the outcome of each."""
        ids = list(dict.fromkeys(connection_ids))
        if not ids:
            return DeliveryReport()
        client = self.client
        payload = data.encode("utf-8")
        if len(ids) == 1:
            outcomes = [self._send_one(client, ids[0], payload)]
        else:
            outcomes = list(self._executor().map(lambda c: self._send_one(client, c, payload), ids))
        return settle(ids, outcomes)

    def _send_one(self, client: Any, connection_id: str, payload: bytes) -> Outcome:
        errors = throttled = 0
        while True:
            try:
                client.post_to_connection(ConnectionId=connection_id, Data=payload)
                return Outcome.DELIVERED
            except Exception as error:
                code, status = _error_code(error)
                if code in _GONE_CODES or status == 410:
                    prune(self._on_gone, connection_id)
                    return Outcome.GONE
                # Each kind has its own budget; the wait grows with every retry so far.
                if code in _THROTTLE_CODES or status == 429:
                    throttled += 1
                    spent = throttled >= self._throttled_attempts
                    base, cap = self._throttled_base_delay, self._throttled_max_delay
                else:
                    errors += 1
                    spent = errors >= self._max_attempts
                    base, cap = self._base_delay, self._max_delay
                retry = errors + throttled
                if code in _FINAL_CODES or spent:
                    logger.warning(
                        "delivery failed",
                        extra={
                            "connection_id": connection_id,
                            "code": code or type(error).__name__,
                        },
                    )
                    return Outcome.FAILED
                self._sleep(full_jitter_delay(retry, base=base, cap=cap, jitter=self._jitter))


class ConnectionPruner:
    """Forget a closed connection: its record and every subscription it held.

    Used as ``ManagementSender(on_gone=...)``; both deletes are idempotent, so a prune that
    races with ``$disconnect`` is harmless.
    """

    def __init__(self, storage: Any) -> None:
        self._storage = storage

    def __call__(self, connection_id: str) -> None:
        self._storage.subscriptions.remove_connection(connection_id)
        self._storage.connections.delete(connection_id)
