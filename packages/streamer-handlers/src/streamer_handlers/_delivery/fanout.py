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
can only reach connections of the tenant it was published to. A small one is sent from the
publishing process; a large one goes to the processor in shards (:mod:`.sharding`).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from streamer_handlers._delivery.management import DeliveryReport
from streamer_handlers._delivery.sharding import (
    FanoutLimits,
    Pacer,
    ShardQueue,
    queue_retry,
    send_paced,
)
from streamer_handlers._lambda.observability import logger

if TYPE_CHECKING:
    from pydantic import BaseModel
    from streamer_core import EventFrame
    from streamer_core.storage import Page, RequestRecord

    from streamer_handlers._lambda.runtime import Runtime


def deliver_to_topic(
    runtime: Runtime,
    tenant_id: str,
    topic: str,
    frame: EventFrame,
    *,
    limits: FanoutLimits | None = None,
    pacer: Pacer | None = None,
    ends_at: float | None = None,
) -> DeliveryReport:
    """Send ``frame`` to every connection of ``tenant_id`` subscribed to ``topic``.

    A topic of at most ``limits.direct_max`` subscribers is sent from here; a larger one is
    handed to the processor in shards (:mod:`.sharding`) and reported as ``queued``.
    Connections whose delivery failed after the sender's retries are queued for another
    try rather than given up. ``pacer`` holds the posts made here to an invocation's rate
    (the processor passes one; a publishing backend's own process does not).
    """
    from streamer_core import encode
    from streamer_core.storage.subscriptions import FULL_READ_PAGE_SIZE

    data = encode(frame)
    limits = limits or FanoutLimits.from_env()
    store = runtime.storage.subscriptions
    page = store.subscribers(tenant_id, topic, limit=limits.direct_max + 1)
    if page.next_token is None and len(page.items) <= limits.direct_max:
        connection_ids = list(dict.fromkeys(page.items))
        if not connection_ids:
            return DeliveryReport()
        report, untried = send_paced(runtime, connection_ids, data, pacer, ends_at=ends_at)
        return _retry_failed(runtime, tenant_id, topic, frame, report, untried, limits)
    if not runtime.settings.queue_url:
        # Without a queue there is no processor to hand shards to: the old way, every
        # page from this process, beyond any rate bound but better than nothing.
        logger.warning("no work queue configured: a large fan-out is sent from this process")
        return _send_every_page(runtime, tenant_id, topic, data, page, pacer)
    shards = ShardQueue(runtime, tenant_id, topic, frame, shard_size=limits.shard_size)
    shards.add(page.items)
    token = page.next_token
    while token is not None:
        page = store.subscribers(tenant_id, topic, limit=FULL_READ_PAGE_SIZE, next_token=token)
        shards.add(page.items)
        token = page.next_token
    shards.close()
    return DeliveryReport(queued=shards.connections, shards=shards.shards)


def _retry_failed(
    runtime: Runtime,
    tenant_id: str,
    topic: str,
    frame: EventFrame,
    report: DeliveryReport,
    untried: Sequence[str],
    limits: FanoutLimits,
) -> DeliveryReport:
    """Queue the connections a direct delivery still owes, when there is a queue to use."""
    owed = [*report.failed, *untried]
    if not owed or not runtime.settings.queue_url:
        return replace(report, failed=tuple(owed))
    try:
        queued = queue_retry(
            runtime, tenant_id, topic, frame, owed, attempt=2, shard_size=limits.shard_size
        )
    except Exception:
        logger.exception("could not queue a retry of a fan-out")
        return replace(report, failed=tuple(owed))
    return replace(report, failed=(), queued=queued, shards=math.ceil(queued / limits.shard_size))


def _send_every_page(
    runtime: Runtime,
    tenant_id: str,
    topic: str,
    data: str,
    first: Page[str],
    pacer: Pacer | None,
) -> DeliveryReport:
    from streamer_core.storage.subscriptions import FULL_READ_PAGE_SIZE

    delivered: list[str] = []
    gone: list[str] = []
    failed: list[str] = []
    page: Page[str] | None = first
    while page is not None:
        report, untried = send_paced(runtime, page.items, data, pacer)
        delivered += report.delivered
        gone += report.gone
        failed += [*report.failed, *untried]
        page = (
            runtime.storage.subscriptions.subscribers(
                tenant_id, topic, limit=FULL_READ_PAGE_SIZE, next_token=page.next_token
            )
            if page.next_token is not None
            else None
        )
    return DeliveryReport(delivered=tuple(delivered), gone=tuple(gone), failed=tuple(failed))


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
