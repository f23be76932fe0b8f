"""``$disconnect``: forget the connection and its subscriptions; its requests run on.

API Gateway delivers ``$disconnect`` at most once and sometimes late or never, which is
why stored connections also expire and why a 410 during delivery prunes the same way.
Deleting twice is harmless, so a replayed event is too.
"""

from __future__ import annotations

from typing import Any

from streamer_handlers._lambda.observability import (
    CONNECTIONS_CLOSED,
    count,
    flush_metrics,
    logger,
    start_invocation,
)
from streamer_handlers._lambda.runtime import cold_start, get_runtime


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point for the ``$disconnect`` route."""
    request_context = event.get("requestContext") or {}
    connection_id = str(request_context.get("connectionId", ""))
    start_invocation(
        request_context.get("requestId") or getattr(context, "aws_request_id", None),
        connection_id=connection_id,
    )
    try:
        with cold_start():
            if not connection_id:
                logger.warning("disconnect event without a connection id")
                return {"statusCode": 200}
            storage = get_runtime().storage
            removed = storage.subscriptions.remove_connection(connection_id)
            previous = storage.connections.delete(connection_id)
            if previous is not None:
                count(CONNECTIONS_CLOSED)
            logger.info(
                "connection closed",
                extra={
                    "subscriptions_removed": removed,
                    "status_code": request_context.get("disconnectStatusCode"),
                    "reason": request_context.get("disconnectReason"),
                },
            )
            return {"statusCode": 200}
    finally:
        flush_metrics()
