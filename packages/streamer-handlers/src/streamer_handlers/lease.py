"""Handing a crashed attempt's claim back, so SQS's next delivery can retry at once.

A claim's lease otherwise lasts as long as the invocation could have run. When the
queue's visibility timeout is shorter than that (the local stack's default is 60 s against
a 900 s function), every redelivery would find the lease still live, the message would
reach the dead-letter queue, and the request would stay PROCESSING. The worker knows its
attempt failed, so it ends the lease itself.

``RequestStore`` offers no operation for this, so this module issues the one conditional
UpdateItem directly, against the item layout the store writes (``owner``/``request_id``
key, ``status``, ``attempts``, ``lease_until`` in epoch ms). The condition names the exact
attempt, so a release can never touch a claim taken since by another worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamer_core import RequestStatus

from .observability import logger

if TYPE_CHECKING:
    from streamer_core.storage import RequestRecord

    from .runtime import Runtime


def requests_table_name(runtime: Runtime) -> str:
    """The requests table, named the way :class:`streamer_core.storage.Storage` names it."""
    from streamer_core.storage import REQUESTS

    settings = runtime.settings
    return settings.requests_table or REQUESTS.physical_name(settings.env)


def release_claim(runtime: Runtime, claimed: RequestRecord) -> bool:
    """End the lease of the attempt ``claimed``; False when the claim is no longer ours."""
    key = claimed.key
    try:
        runtime.dynamodb.update_item(
            TableName=requests_table_name(runtime),
            Key={"owner": {"S": key.owner}, "request_id": {"S": key.request_id}},
            UpdateExpression="SET lease_until = :released",
            ConditionExpression="#status = :processing AND attempts = :attempts",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":released": {"N": "0"},
                ":processing": {"S": RequestStatus.PROCESSING.value},
                ":attempts": {"N": str(claimed.attempts)},
            },
        )
    except Exception as error:
        logger.warning("claim not released", extra={"error": type(error).__name__})
        return False
    return True
