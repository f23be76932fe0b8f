"""Failing a request for good, and making sure whoever follows it hears so.

Every path that ends a request in FAILED goes through :func:`fail_and_notify`: an action's
error, a timeout, a crash on the last SQS attempt, a request naming an action the
application no longer serves, or a last attempt that could not even claim it. A client
waiting on a request must never be left with a record that says FAILED and no ``error``
frame, or (worse) a message in the dead-letter queue and a record that still says QUEUED.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from streamer_core import ErrorInfo

from streamer_handlers._delivery.fanout import deliver_to_request
from streamer_handlers._delivery.frames import error_frame
from streamer_handlers._lambda.observability import REQUESTS_FAILED, count, logger

if TYPE_CHECKING:
    from streamer_core.storage import RequestKey

    from streamer_handlers._lambda.runtime import Runtime


def fail_and_notify(
    runtime: Runtime, key: RequestKey, info: ErrorInfo, *, skip: Collection[str] = ()
) -> bool:
    """Mark ``key`` FAILED with ``info`` and send ``error`` to its followers.

    The followers come back with the write that fails the request, so telling them costs
    no lookup; ``skip`` names those already known to be gone. Returns False when the
    request had already ended (another worker finished it, or it was cancelled): then
    nothing is sent, because its followers already got its final frame. A failed delivery
    is logged, not raised: the outcome is stored, and ``status`` returns it to a client
    that missed the frame.
    """
    from streamer_core.storage import IllegalTransitionError

    try:
        record = runtime.storage.requests.fail(key, info)
    except IllegalTransitionError as error:
        logger.warning("request could not be failed", extra={"status": str(error.current)})
        return False
    count(REQUESTS_FAILED)
    frame = error_frame(info.code, info.message, key.request_id, info.details)
    try:
        deliver_to_request(runtime, record, frame, skip=skip)
    except Exception:
        logger.exception("could not deliver the error frame")
    return True
