"""Who hears about a request, and getting its frames to them.

Updates of an asynchronous request go to every connection subscribed to the request's
internal topic (see :func:`request_topic`): a client that reconnects and resends the
request id, or asks for its ``status``, joins the audience, and ``$disconnect`` or a 410
cleans the subscription up with the rest of the connection's.

The subscriptions are found through a global secondary index, which DynamoDB keeps only
eventually consistent: a job that finishes within moments of being queued could find its
submitter's subscription not yet indexed. The connection that submitted the request is
stored on the request itself, so it is always among the recipients, whatever the index
says.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .sender import DeliveryReport

if TYPE_CHECKING:
    from pydantic import BaseModel
    from streamer_core.storage import RequestKey

    from .runtime import Runtime

REQUEST_TOPIC_PREFIX = "$request/"
"""User topics cannot contain ``$`` (TOPIC_PATTERN), so no client can subscribe to these."""


def request_topic(key: RequestKey) -> str:
    """The internal topic carrying one request's progress, result and error.

    Request ids are unique per user, not per tenant, so the user is part of the name; ids
    never contain ``/``, which keeps ``request_id/user_id`` unambiguous.
    """
    return f"{REQUEST_TOPIC_PREFIX}{key.request_id}/{key.user_id}"


def is_request_topic(topic: str) -> bool:
    """Whether ``topic`` is a request's internal topic rather than one a client chose."""
    return topic.startswith(REQUEST_TOPIC_PREFIX)


def follow_request(
    runtime: Runtime, key: RequestKey, connection_id: str, *, expires_at: int
) -> None:
    """Subscribe ``connection_id`` to the updates of request ``key`` (idempotent).

    Callers subscribe before they read the request's state, never after: an update that
    lands between a read and a later subscribe would reach nobody.
    """
    runtime.storage.subscriptions.subscribe(
        connection_id, key.tenant_id, request_topic(key), expires_at=expires_at
    )


def unfollow_request(runtime: Runtime, key: RequestKey, connection_id: str) -> None:
    """Undo :func:`follow_request` when the request turned out absent or not the caller's."""
    runtime.storage.subscriptions.unsubscribe(connection_id, request_topic(key))


def deliver_to_topic(
    runtime: Runtime,
    tenant_id: str,
    topic: str,
    frame: BaseModel,
    *,
    also: tuple[str, ...] = (),
) -> DeliveryReport:
    """Send ``frame`` to every connection of ``tenant_id`` subscribed to ``topic``.

    ``also`` names connections that must get the frame even if the index does not list
    them (yet); a connection listed both ways gets it once.
    """
    from streamer_core import encode

    data = encode(frame)
    subscribers = runtime.storage.subscriptions.all_subscribers(tenant_id, topic)
    connection_ids = list(dict.fromkeys((*also, *subscribers)))
    if not connection_ids:
        return DeliveryReport()
    return runtime.sender.send(connection_ids, data)


def deliver_to_request(
    runtime: Runtime,
    key: RequestKey,
    frame: BaseModel,
    connection_id: str | None = None,
) -> DeliveryReport:
    """Send ``frame`` to every connection following the request ``key``.

    ``connection_id`` is the connection stored on the request (the one that submitted
    it): it is included even before the subscriptions index shows it.
    """
    also = (connection_id,) if connection_id else ()
    return deliver_to_topic(runtime, key.tenant_id, request_topic(key), frame, also=also)
