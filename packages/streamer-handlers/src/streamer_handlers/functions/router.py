"""Every message route (``$default`` and one route per action): one frame in, one frame out.

The reply is the integration's response body, which API Gateway sends back to the caller
as the route response; that avoids a management-API call (and its latency) for every
answer. Only updates that happen later (progress, results, events) use the management API,
and so does the TIMEOUT of a sync action that overran: that message gets no body at all.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from streamer_core import ErrorCode, ErrorFrame, FrameTooLargeError, encode

from streamer_handlers._delivery.frames import error_frame, internal_error
from streamer_handlers._lambda.observability import (
    MESSAGE_FAILURES,
    MESSAGES_ROUTED,
    count,
    flush_metrics,
    logger,
    start_invocation,
)
from streamer_handlers._lambda.runtime import cold_start, get_runtime
from streamer_handlers._router.dispatch import route_message


def _encode_reply(frame: BaseModel) -> tuple[str, bool]:
    try:
        return encode(frame), isinstance(frame, ErrorFrame)
    except FrameTooLargeError as error:
        request_id = getattr(frame, "request_id", None)
        logger.error("reply too large", extra={"size": error.size})
        # The client's frame was valid; the server produced a reply it cannot send.
        too_large = error_frame(
            ErrorCode.INTERNAL_ERROR,
            "the reply is larger than the 128 KB frame limit",
            request_id if isinstance(request_id, str) else None,
        )
        return encode(too_large), True


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point for message routes; the returned body is the caller's reply."""
    request_context = event.get("requestContext") or {}
    # Until the frame is parsed, the gateway's request id is the best correlation id;
    # route_message replaces it with the client's request id (kept as gateway_request_id).
    gateway_request_id = request_context.get("requestId") or getattr(
        context, "aws_request_id", None
    )
    start_invocation(
        gateway_request_id,
        connection_id=request_context.get("connectionId"),
        gateway_request_id=gateway_request_id,
    )
    try:
        frame: BaseModel | None
        try:
            with cold_start():
                frame = route_message(get_runtime(), event, context)
        except Exception:
            logger.exception("message could not be routed")
            frame = internal_error()
        count(MESSAGES_ROUTED)
        if frame is None:
            # Already answered (TIMEOUT, by the watchdog): no body, so no route response.
            count(MESSAGE_FAILURES)
            return {"statusCode": 200}
        body, failed = _encode_reply(frame)
        if failed:
            count(MESSAGE_FAILURES)
        return {"statusCode": 200, "body": body}
    finally:
        flush_metrics()
