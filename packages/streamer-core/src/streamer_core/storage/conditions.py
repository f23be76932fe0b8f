"""Reading DynamoDB's answers to conditional writes.

Every write in the stores is conditional; when the condition fails DynamoDB can hand back
the item as it was (ReturnValuesOnConditionCheckFailure), which tells the caller *why* in
the same round trip instead of a second read that could already be stale.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

CONDITIONAL_CHECK_FAILED = "ConditionalCheckFailedException"


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def rejected_item(exc: ClientError) -> dict[str, Any] | None:
    """The item that failed the condition (None when there was none); other errors propagate."""
    if error_code(exc) != CONDITIONAL_CHECK_FAILED:
        raise exc
    item: dict[str, Any] | None = exc.response.get("Item")  # type: ignore[assignment]
    return item or None
