"""Logs, metrics and traces shared by the four functions.

Logs are Powertools JSON with a correlation id per invocation and every JWT-shaped string
redacted at serialization time, so a token pasted into a message or an exception never
reaches CloudWatch. Metrics are CloudWatch EMF lines in the ``Streamer`` namespace. The
X-Ray tracer is only imported and created when tracing is on, because creating it is one of
the dearest steps of a cold start (`benchmarks/README.md`).

The local stack runs many invocations concurrently in one process, so correlation ids use
Powertools' thread-local keys and metric updates are serialized by a lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from streamer_core.auth import redact_tokens

from streamer_handlers._routes import METRICS_NAMESPACE as NAMESPACE
from streamer_handlers._routes import METRICS_SERVICE as SERVICE
from streamer_handlers._routes import metric_dimensions

AUTH_FAILURES = "AuthFailures"
CONNECTIONS_OPENED = "ConnectionsOpened"
CONNECTIONS_CLOSED = "ConnectionsClosed"
MESSAGES_ROUTED = "MessagesRouted"
MESSAGE_FAILURES = "MessageFailures"
PROCESSING_LATENCY = "ProcessingLatency"
PROGRESS_DELIVERED = "ProgressDelivered"
STALE_CONNECTIONS_PRUNED = "StaleConnectionsPruned"
RATE_LIMITED = "RateLimited"
REQUESTS_FAILED = "RequestsFailed"


def _serialize(record: dict[str, Any]) -> str:
    return redact_tokens(json.dumps(record, default=str, separators=(",", ":")))


logger = Logger(
    service=os.environ.get("POWERTOOLS_SERVICE_NAME") or SERVICE, json_serializer=_serialize
)
_dimensions = metric_dimensions(os.environ.get("STREAMER_ENV") or "dev")
metrics = Metrics(namespace=NAMESPACE, service=_dimensions.pop("service"))
metrics.set_default_dimensions(**_dimensions)
"""Dimensions from :func:`.routes.metric_dimensions`, so that several environments sharing one
account never mix their alarms, and the alarms name exactly what is emitted."""
_metrics_lock = threading.Lock()
_tracer_lock = threading.Lock()
_tracer: Any = None


def start_invocation(correlation_id: str | None, **keys: object) -> None:
    """Reset this thread's log keys for a new invocation."""
    logger.thread_safe_clear_keys()
    logger.thread_safe_append_keys(correlation_id=correlation_id, **keys)


def add_log_keys(**keys: object) -> None:
    """Add keys to every later log line of this invocation (this thread)."""
    logger.thread_safe_append_keys(**keys)


def count(name: str, value: float = 1) -> None:
    """Add ``value`` to the counter ``name`` of this invocation.

    Nothing at all when metrics are off: Powertools would validate and keep the value only
    for :func:`flush_metrics` to drop it, a fifth of the router's work per message locally.
    """
    if is_metrics_disabled():
        return
    with _metrics_lock:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def milliseconds(name: str, value: float) -> None:
    """Record a latency sample in milliseconds (nothing when metrics are off)."""
    if is_metrics_disabled():
        return
    with _metrics_lock:
        metrics.add_metric(name=name, unit=MetricUnit.Milliseconds, value=value)


def count_with_dimension(name: str, dimension: str, value: str) -> None:
    """Emit one extra data point of ``name`` split by ``dimension`` (e.g. AuthFailures by reason).

    Alarms watch the undimensioned total (see :func:`count`); this series is for dashboards.
    """
    if is_metrics_disabled():
        return
    with single_metric(
        name=name,
        unit=MetricUnit.Count,
        value=1,
        namespace=NAMESPACE,
        default_dimensions=dict(metrics.default_dimensions),
    ) as metric:
        metric.add_dimension(name=dimension, value=value)


def flush_metrics() -> None:
    """Write the pending metrics as one EMF line; nothing when there are none.

    With POWERTOOLS_METRICS_DISABLED (the local stack may set it) Powertools skips the write
    but keeps the values, so they are dropped here instead of piling up in a warm process.
    """
    with _metrics_lock:
        if not metrics.metric_set:
            return
        if is_metrics_disabled():
            metrics.clear_metrics()
            return
        metrics.flush_metrics()


def tracing_enabled() -> bool:
    """Tracing runs only inside Lambda and only when Powertools has not been told otherwise."""
    disabled = os.environ.get("POWERTOOLS_TRACE_DISABLED", "").strip().lower()
    if disabled in {"1", "true", "yes", "on"}:
        return False
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def get_tracer() -> Any:
    """The Powertools Tracer, created on first use; ``None`` when tracing is off."""
    global _tracer
    if not tracing_enabled():
        return None
    with _tracer_lock:
        if _tracer is None:
            from aws_lambda_powertools import Tracer

            # Only botocore: the default patches every library the X-Ray SDK knows, and
            # importing each to patch it is paid at every cold start.
            _tracer = Tracer(service=SERVICE, patch_modules=("botocore",))
        return _tracer


@contextlib.contextmanager
def subsegment(name: str) -> Iterator[None]:
    """Trace the block as an X-Ray subsegment when tracing is on; free otherwise."""
    tracer = get_tracer()
    if tracer is None:
        yield
        return
    with tracer.provider.in_subsegment(name):
        yield
