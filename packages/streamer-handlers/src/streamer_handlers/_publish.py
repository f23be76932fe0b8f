"""Server-side publish: any Python backend sends an ``event`` to a topic of one tenant.

The subscriber lookup is a query on ``tenant#topic``, so the tenant is part of the key and
an event can only ever reach connections of the tenant it was published to.
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


@functools.cache
def _topic_match() -> re.Pattern[str]:
    """Compiled on first publish: the package imports this module eagerly (see __init__)."""
    from streamer_core import TOPIC_PATTERN

    return re.compile(TOPIC_PATTERN)


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
    from streamer_core import EventFrame

    if not _topic_match().fullmatch(topic):
        raise ValueError(f"topic {topic!r} does not match {_topic_match().pattern}")
    frame = (
        EventFrame(topic=topic, data=data, id=event_id)
        if event_id is not None
        else EventFrame(topic=topic, data=data)
    )
    return deliver_to_topic(runtime or get_runtime(), tenant_id, topic, frame)
