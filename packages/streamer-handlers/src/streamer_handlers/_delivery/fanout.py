"""Who hears about a request or a topic, and getting frames to them.

A request's audience is kept on the request itself (``RequestRecord.followers``): the
connection that submitted it, any that resent its id, and any that asked its ``status``
while it ran. Each of them joined in the same conditional write that created or read the
request, and every write that records progress or an outcome returns the set, so
delivering a request's frame needs no lookup of its own: one write, then one management
API call per follower. There is no index to lag behind either, so a job that finishes
within moments of being queued still reaches its submitter.

A follower whose connection is gone answers 410 once; the worker leaves it out of later
frames and drops it from the set with its next write (see :mod:`.processing`), and the
sender's pruner forgets the connection itself, as it does for topic subscribers.

A topic's audience is the subscriptions table, queried by ``tenant#topic`` so that an event
can only reach connections of the tenant it was published to.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from streamer_handlers._delivery.management import DeliveryReport

if TYPE_CHECKING:
    from pydantic import BaseModel
    from streamer_core.storage import RequestRecord

    from streamer_handlers._lambda.runtime import Runtime


def deliver_to_topic(
    runtime: Runtime, tenant_id: str, topic: str, frame: BaseModel
) -> DeliveryReport:
    """Send ``frame`` to every connection of ``tenant_id`` subscribed to ``topic``."""
    from streamer_core import encode

    data = encode(frame)
    subscribers = runtime.storage.subscriptions.all_subscribers(tenant_id, topic)
    connection_ids = list(dict.fromkeys(subscribers))
    if not connection_ids:
        return DeliveryReport()
    return runtime.sender.send(connection_ids, data)


def deliver_to_request(
    runtime: Runtime,
    record: RequestRecord,
    frame: BaseModel,
    *,
    skip: Collection[str] = (),
) -> DeliveryReport:
    """Send ``frame`` to the followers of ``record``, as the write that produced it found them.

    ``skip`` names connections already known to be gone, so they are not posted to again.
    """
    from streamer_core import encode

    connection_ids = sorted(record.followers.difference(skip))
    if not connection_ids:
        return DeliveryReport()
    return runtime.sender.send(connection_ids, encode(frame))
