"""Work queue messages that are not jobs: ``publish`` requests and fan-out shards.

The queue is an entry point of its own: whoever IAM lets send to it (``sqs:SendMessage``
on the work queue, and the stack key for its encryption) can publish to a topic of one
tenant from a shell, a Node or a Go service, without this package. Such a message is
input from outside like a client frame, so it is checked field by field before anything
is read or sent; docs/protocol.md documents both kinds.

A message that can never be valid (not an object, an unknown kind, a missing or malformed
field, a tenant outside STREAMER_ALLOWED_TENANTS, an event over the frame limit) is
dropped at once with a ``queue message rejected`` log line naming the reason and the
field, and the ``QueueMessagesRejected`` metric: retrying it would change nothing, and the
dead-letter queue (and its alarm) is kept for work that was valid and failed. It never
fails the batch. A valid message whose work fails (DynamoDB or SQS unavailable) raises,
so SQS delivers it again; the event keeps its id, and clients drop what they already have.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streamer_handlers._delivery.fanout import deliver_to_topic
from streamer_handlers._delivery.sharding import (
    KIND_FANOUT,
    KIND_PUBLISH,
    MAX_SHARD_ATTEMPTS,
    MAX_SHARD_CONNECTIONS,
    FanoutLimits,
    Pacer,
    queue_retry,
    send_paced,
)
from streamer_handlers._lambda.observability import add_log_keys, count, logger
from streamer_handlers._processor.jobs import PROCESSOR_MARGIN_SECONDS, seconds_left
from streamer_handlers._publish import TargetError, check_target

if TYPE_CHECKING:
    from streamer_core import EventFrame

    from streamer_handlers._lambda.runtime import Runtime

QUEUE_MESSAGES_REJECTED = "QueueMessagesRejected"
KINDS = (KIND_PUBLISH, KIND_FANOUT)
_LOGGED_VALUE_CHARS = 64


class Rejected(ValueError):
    """A queue message that can never be processed: why, and which field."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


def queued_message(body: str) -> dict[str, Any] | None:
    """The message as an object when it names a ``kind``; None for a job (a request key).

    A job body is a bare request key and never has a ``kind``; anything that does is one of
    these messages, or a malformed one, and is handled here.
    """
    if '"kind"' not in body:
        return None
    try:
        message = json.loads(body)
    except ValueError:
        return None
    if isinstance(message, dict) and "kind" in message:
        return message
    return None


@dataclass(frozen=True)
class QueuedEvent:
    """A checked ``publish`` or ``fanout`` message."""

    kind: str
    tenant_id: str
    topic: str
    data: Any
    event_id: str | None
    published_at: int | None = None
    connections: tuple[str, ...] = ()
    attempt: int = 1

    def frame(self, message_id: str) -> EventFrame:
        """The event this message sends; an id derived from the SQS message when it has
        none, so a redelivery of the same message is recognisably the same event."""
        from streamer_core import EventFrame

        fields: dict[str, Any] = {"topic": self.topic, "data": self.data}
        event_id = self.event_id or (f"sqs-{message_id}" if message_id else None)
        if event_id is not None:
            fields["id"] = event_id
        if self.published_at is not None:
            fields["published_at"] = self.published_at
        return EventFrame(**fields)


def _required(message: Mapping[str, Any], name: str) -> str:
    value = message.get(name)
    if not isinstance(value, str) or not value:
        raise Rejected(f"{name} must be a non-empty string", name)
    return value


def _optional(message: Mapping[str, Any], name: str) -> str | None:
    return None if message.get(name) is None else _required(message, name)


def _integer(message: Mapping[str, Any], name: str, *, minimum: int) -> int:
    value = message.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise Rejected(f"{name} must be an integer >= {minimum}", name)
    return value


@functools.cache
def _id_match() -> re.Pattern[str]:
    from streamer_core import ID_PATTERN

    return re.compile(ID_PATTERN)


def parse(runtime: Runtime, message: Mapping[str, Any]) -> QueuedEvent:
    """Check every field of a message; raises :class:`Rejected` on the first bad one."""
    kind = message.get("kind")
    if kind not in KINDS:
        raise Rejected(f"kind must be one of {', '.join(KINDS)}", "kind")
    tenant_id, topic = message.get("tenant"), message.get("topic")
    try:
        check_target(runtime.settings, tenant_id, topic)
    except TargetError as error:
        raise Rejected(str(error).replace("tenant_id", "tenant"), error.field) from None
    tenant_id, topic = str(tenant_id), str(topic)
    event_id = _required(message, "id") if kind == KIND_FANOUT else _optional(message, "id")
    if event_id is not None and not _id_match().fullmatch(event_id):
        raise Rejected(f"id must match {_id_match().pattern}", "id")
    data = message.get("data")
    if kind == KIND_PUBLISH:
        return QueuedEvent(kind, tenant_id, topic, data, event_id)
    connections = message.get("connections")
    if (
        not isinstance(connections, list)
        or not 0 < len(connections) <= MAX_SHARD_CONNECTIONS
        or not all(isinstance(c, str) and c for c in connections)
    ):
        raise Rejected(
            f"connections must list 1 to {MAX_SHARD_CONNECTIONS} connection ids", "connections"
        )
    return QueuedEvent(
        kind,
        tenant_id,
        topic,
        data,
        event_id,
        published_at=_integer(message, "published_at", minimum=0),
        connections=tuple(connections),
        attempt=_integer(message, "attempt", minimum=1),
    )


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _LOGGED_VALUE_CHARS else text[:_LOGGED_VALUE_CHARS] + "..."


def process_queued(
    runtime: Runtime,
    message: Mapping[str, Any],
    *,
    message_id: str,
    pacer: Pacer,
    context: Any = None,
) -> None:
    """Check and run one ``publish`` or ``fanout`` message; raising leaves it on the queue."""
    from streamer_core import encode
    from streamer_core.protocol import ProtocolError

    try:
        event = parse(runtime, message)
        frame = event.frame(message_id)
        data = encode(frame)
    except (Rejected, ProtocolError, ValueError) as error:
        reason = getattr(error, "reason", None) or str(error)
        logger.warning(
            "queue message rejected",
            extra={
                "reason": reason,
                "field": getattr(error, "field", None) or "data",
                "kind": _shown(message.get("kind")),
                "sqs_message_id": message_id,
            },
        )
        count(QUEUE_MESSAGES_REJECTED)
        return
    add_log_keys(tenant_id=event.tenant_id, topic=event.topic, event_id=frame.id)
    limits = FanoutLimits.from_env()
    ends_at = time.monotonic() + seconds_left(runtime, context) - PROCESSOR_MARGIN_SECONDS
    if event.kind == KIND_PUBLISH:
        report = deliver_to_topic(
            runtime,
            event.tenant_id,
            event.topic,
            frame,
            limits=limits,
            pacer=pacer,
            ends_at=ends_at,
        )
        logger.info(
            "queued publish sent",
            extra={
                "delivered": len(report.delivered),
                "queued": report.queued,
                "shards": report.shards,
                "failed": len(report.failed),
            },
        )
        return
    _send_shard(runtime, event, frame, data, limits=limits, pacer=pacer, ends_at=ends_at)


def _send_shard(
    runtime: Runtime,
    event: QueuedEvent,
    frame: EventFrame,
    data: str,
    *,
    limits: FanoutLimits,
    pacer: Pacer,
    ends_at: float,
) -> None:
    """Send one shard to those of its connections that are subscribers of its tenant's topic,
    and queue whoever it could not reach for the next attempt."""
    connection_ids = runtime.storage.subscriptions.subscribed(
        event.tenant_id, event.topic, event.connections
    )
    report, untried = send_paced(runtime, connection_ids, data, pacer, ends_at=ends_at)
    retry = [*report.failed, *untried]
    if retry:
        # Raising here would make SQS redeliver the whole shard after the queue's
        # visibility timeout (hours): the connections that got the event would get it
        # again, and the others far too late.
        queue_retry(
            runtime,
            event.tenant_id,
            event.topic,
            frame,
            retry,
            attempt=event.attempt + 1,
            shard_size=limits.shard_size,
        )
    logger.debug(
        "shard sent",
        extra={
            "attempt": event.attempt,
            "delivered": len(report.delivered),
            "gone": len(report.gone),
            "retried": len(retry) if event.attempt < MAX_SHARD_ATTEMPTS else 0,
        },
    )
