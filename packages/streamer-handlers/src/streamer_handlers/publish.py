"""Server-side publish: any Python backend sends an ``event`` to a topic of one tenant.

The subscriber lookup is a query on ``tenant#topic``, so the tenant is part of the key and
an event can only ever reach connections of the tenant it was published to.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydantic import JsonValue
from streamer_core import TOPIC_PATTERN, EventFrame

from .delivery import deliver_to_topic
from .runtime import get_runtime
from .sender import DeliveryReport

if TYPE_CHECKING:
    from .runtime import Runtime

_TOPIC_RE = re.compile(TOPIC_PATTERN)


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
    """
    if not tenant_id:
        raise ValueError("tenant_id is required")
    if not _TOPIC_RE.fullmatch(topic):
        raise ValueError(f"topic {topic!r} does not match {TOPIC_PATTERN}")
    frame = (
        EventFrame(topic=topic, data=data, id=event_id)
        if event_id is not None
        else EventFrame(topic=topic, data=data)
    )
    return deliver_to_topic(runtime or get_runtime(), tenant_id, topic, frame)
