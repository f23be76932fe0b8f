"""Who hears about a request, and getting its frames to them.

Updates of an asynchronous request go to every connection subscribed to the request's
internal topic (see :func:`request_topic`), not to one stored connection id: a client that
reconnects and resends the request id, or asks for its ``status``, joins the audience, and
``$disconnect`` or a 410 cleans the subscription up with the rest of the connection's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel
from streamer_core import encode

from .sender import DeliveryReport

if TYPE_CHECKING:
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


def deliver_to_topic(
    runtime: Runtime, tenant_id: str, topic: str, frame: BaseModel
) -> DeliveryReport:
    """Send ``frame`` to every connection of ``tenant_id`` subscribed to ``topic``."""
    data = encode(frame)
    connection_ids = runtime.storage.subscriptions.all_subscribers(tenant_id, topic)
    if not connection_ids:
        return DeliveryReport()
    return runtime.sender.send(connection_ids, data)


def deliver_to_request(runtime: Runtime, key: RequestKey, frame: BaseModel) -> DeliveryReport:
    """Send ``frame`` to every connection following the request ``key``."""
    return deliver_to_topic(runtime, key.tenant_id, request_topic(key), frame)
