"""Server-side publish: any Python backend sends an ``event`` to a topic of one tenant.

The subscriber lookup is a query on ``tenant#topic``, so the tenant is part of the key and
an event can only ever reach connections of the tenant it was published to. A topic with
more subscribers than one process should post to is handed to the processor in shards
(:mod:`._delivery.sharding`); backends without this package publish through the work
queue instead (a ``publish`` message, docs/protocol.md), which ends in the same function.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

from streamer_handlers._delivery.fanout import deliver_to_topic
from streamer_handlers._lambda.runtime import get_runtime

if TYPE_CHECKING:
    from pydantic import JsonValue

    from streamer_handlers._delivery.management import DeliveryReport
    from streamer_handlers._lambda.runtime import Runtime
    from streamer_handlers._lambda.settings import Settings

KEY_SEPARATOR = "#"
"""Joins tenant and topic in the subscriptions index (``streamer_core.storage``)."""


@functools.cache
def _topic_match() -> re.Pattern[str]:
    """Compiled on first publish: the package imports this module eagerly (see __init__)."""
    from streamer_core import TOPIC_PATTERN

    return re.compile(TOPIC_PATTERN)


class TargetError(ValueError):
    """A tenant or topic no publish may address; ``field`` names which."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def check_target(settings: Settings, tenant_id: object, topic: object) -> None:
    """Refuse a tenant or topic no subscriber could hold, whichever way the publish came.

    A separator in the tenant would let ``a#b`` + ``c`` address ``a`` + ``b#c``; topics
    cannot hold one either (the pattern), so a key names exactly one tenant's topic.
    """
    if not isinstance(tenant_id, str) or not tenant_id:
        raise TargetError("tenant_id is required", "tenant")
    if KEY_SEPARATOR in tenant_id:
        raise TargetError(f"tenant_id must not contain {KEY_SEPARATOR!r}", "tenant")
    allowed = settings.allowed_tenants
    if allowed is not None and tenant_id not in allowed:
        raise TargetError("tenant_id is not one of STREAMER_ALLOWED_TENANTS", "tenant")
    if not isinstance(topic, str) or not _topic_match().fullmatch(topic):
        shown = topic if isinstance(topic, str) and len(topic) <= 300 else type(topic).__name__
        raise TargetError(f"topic {shown!r} does not match {_topic_match().pattern}", "topic")


def publish(
    tenant_id: str,
    topic: str,
    data: JsonValue = None,
    *,
    event_id: str | None = None,
    runtime: Runtime | None = None,
) -> DeliveryReport:
    """Send ``data`` as an ``event`` frame to every connection of ``tenant_id`` on ``topic``.

    ``event_id`` lets a publisher that retries give the same id twice, so clients can drop
    the duplicate. Uses the process's runtime (STREAMER_* environment) unless one is given.
    A large topic comes back ``queued`` (sent by the processor right after) rather than
    ``delivered``.
    """
    runtime = runtime or get_runtime()
    check_target(runtime.settings, tenant_id, topic)
    from streamer_core import EventFrame

    frame = (
        EventFrame(topic=topic, data=data, id=event_id)
        if event_id is not None
        else EventFrame(topic=topic, data=data)
    )
    return deliver_to_topic(runtime, tenant_id, topic, frame)
