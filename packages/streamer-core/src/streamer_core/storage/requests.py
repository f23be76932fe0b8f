"""Requests and their life cycle: QUEUED → PROCESSING → COMPLETED | FAILED | CANCELLED.

Every state change is one conditional UpdateItem whose condition names the states it may
leave, so two workers, a redelivered SQS message or a late cancel can never move a request
twice: DynamoDB applies one of the racing writes and refuses the others.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from streamer_core.limits import RequestStatus
from streamer_core.storage.clock import Clock, epoch_ms, is_live
from streamer_core.storage.codec import (
    MAX_JSON_VALUE_BYTES,
    attribute_value,
    content_hash,
    deserialize_item,
    dump_json,
    load_json,
    serialize_item,
)
from streamer_core.storage.conditions import rejected_item

if TYPE_CHECKING:
    from streamer_core.protocol import ErrorInfo, ProgressState

from streamer_core.storage.errors import (
    ConflictError,
    IllegalTransitionError,
    ItemTooLargeError,
    StorageError,
)
from streamer_core.storage.records import RequestKey, RequestRecord

DEFAULT_TTL_SECONDS = 7 * 86400
_NAMES = {"#status": "status"}


def _to_record(item: Mapping[str, Any]) -> RequestRecord:
    from streamer_core.protocol import ErrorInfo, ProgressState

    progress = item.get("progress")
    error = item.get("error")
    lease_until = item.get("lease_until")
    return RequestRecord(
        key=RequestKey(item["tenant_id"], item["user_id"], item["request_id"]),
        action=item["action"],
        payload=load_json(item["payload"]),
        payload_hash=item["payload_hash"],
        status=RequestStatus(item["status"]),
        connection_id=item.get("connection_id"),
        created_at=int(item["created_at"]),
        updated_at=int(item["updated_at"]),
        expires_at=int(item["expires_at"]),
        progress=ProgressState.model_validate(load_json(progress)) if progress else None,
        result=load_json(item["result"]) if "result" in item else None,
        error=ErrorInfo.model_validate(load_json(error)) if error else None,
        attempts=int(item.get("attempts", 0)),
        lease_until=int(lease_until) if lease_until is not None else None,
        cancel_requested=bool(item.get("cancel_requested", False)),
        metadata={str(k): str(v) for k, v in _metadata(item.get("metadata")).items()},
    )


def _metadata(stored: Any) -> Mapping[str, Any]:
    """Metadata is stored as JSON text; items written before that hold a DynamoDB map."""
    if isinstance(stored, str):
        value = load_json(stored)
        return value if isinstance(value, dict) else {}
    return stored if isinstance(stored, Mapping) else {}


class RequestStore:
    """Keyed by owner (tenant#user), so a status or cancel can only reach the caller's work."""

    def __init__(
        self,
        client: Any,
        table_name: str,
        *,
        clock: Clock = time.time,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
    ) -> None:
        self._client = client
        self._table = table_name
        self._clock = clock
        self._ttl_seconds = ttl_seconds

    def _key(self, key: RequestKey) -> dict[str, Any]:
        return {"owner": {"S": key.owner}, "request_id": {"S": key.request_id}}

    def _live_record(self, raw: Mapping[str, Any] | None) -> RequestRecord | None:
        if not raw:
            return None
        item = deserialize_item(raw)
        return _to_record(item) if is_live(item.get("expires_at"), self._clock()) else None

    def create(
        self,
        key: RequestKey,
        action: str,
        payload: dict[str, Any],
        *,
        connection_id: str | None,
        metadata: Mapping[str, str] | None = None,
    ) -> tuple[RequestRecord, bool]:
        """Store a new QUEUED request, or return the one already stored under this id.

        The bool is True when this call created it. A client that retries after a lost
        acknowledgment gets the original request back; reusing the id for other work is a
        ConflictError.
        """
        now = self._clock()
        now_ms = epoch_ms(now)
        metadata = dict(metadata or {})
        payload_text = dump_json(payload, field="payload")
        metadata_text = dump_json(metadata, field="metadata")
        size = len(payload_text.encode("utf-8")) + len(metadata_text.encode("utf-8"))
        if size > MAX_JSON_VALUE_BYTES:
            raise ItemTooLargeError("payload and metadata", size, MAX_JSON_VALUE_BYTES)
        payload_hash = content_hash(payload)
        item = serialize_item(
            {
                "owner": key.owner,
                "request_id": key.request_id,
                "tenant_id": key.tenant_id,
                "user_id": key.user_id,
                "action": action,
                "payload": payload_text,
                "payload_hash": payload_hash,
                "status": RequestStatus.QUEUED.value,
                "connection_id": connection_id,
                "created_at": now_ms,
                "updated_at": now_ms,
                "expires_at": int(now) + self._ttl_seconds,
                "attempts": 0,
                "cancel_requested": False,
                # Text, not a map: metadata keys are client-chosen, and DynamoDB cannot
                # hold every string (the empty one, for a start) as a map key.
                "metadata": metadata_text,
            }
        )
        try:
            self._client.put_item(
                TableName=self._table,
                Item=item,
                # An expired leftover that DynamoDB has not deleted yet is treated as absent.
                ConditionExpression="attribute_not_exists(request_id) OR expires_at <= :now",
                ExpressionAttributeValues={":now": attribute_value(int(now))},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            existing = self._live_record(rejected_item(exc))
            if existing is None:
                raise StorageError(
                    f"request {key.request_id!r} was refused but no live item was returned"
                ) from exc
            if existing.action != action or existing.payload_hash != payload_hash:
                raise ConflictError(key.request_id) from None
            return existing, False
        return _to_record(deserialize_item(item)), True

    def get(self, key: RequestKey) -> RequestRecord | None:
        response = self._client.get_item(
            TableName=self._table, Key=self._key(key), ConsistentRead=True
        )
        return self._live_record(response.get("Item"))

    def _update(
        self,
        key: RequestKey,
        *,
        update: str,
        condition: str,
        values: Mapping[str, Any],
        names: Mapping[str, str] | None = None,
    ) -> tuple[RequestRecord | None, RequestRecord | None]:
        """Apply a conditional update: (new record, None) or, when refused, (None, live old record).

        Every condition also requires the item to exist and be unexpired; `updated_at` is
        always set from :now_ms.
        """
        now = self._clock()
        expression_values = {
            ":now_s": attribute_value(int(now)),
            ":now_ms": attribute_value(epoch_ms(now)),
            **{name: attribute_value(value) for name, value in values.items()},
        }
        try:
            response = self._client.update_item(
                TableName=self._table,
                Key=self._key(key),
                UpdateExpression=update,
                ConditionExpression=f"expires_at > :now_s AND ({condition})",
                ExpressionAttributeNames={**_NAMES, **(names or {})},
                ExpressionAttributeValues=expression_values,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            return None, self._live_record(rejected_item(exc))
        return _to_record(deserialize_item(response["Attributes"])), None

    def _transition(
        self,
        key: RequestKey,
        target: RequestStatus,
        allowed: tuple[RequestStatus, ...],
        *,
        sets: str = "",
        values: Mapping[str, Any] | None = None,
        names: Mapping[str, str] | None = None,
    ) -> RequestRecord:
        """Move to `target` from one of `allowed`; a finished request holds no lease."""
        placeholders = {f":from{i}": status.value for i, status in enumerate(allowed)}
        record, old = self._update(
            key,
            update=(
                "SET #status = :target, updated_at = :now_ms"
                + (f", {sets}" if sets else "")
                + " REMOVE lease_until"
            ),
            condition=f"#status IN ({', '.join(placeholders)})",
            values={":target": target.value, **placeholders, **(values or {})},
            names=names,
        )
        if record is None:
            raise IllegalTransitionError(
                key.request_id, old.status if old is not None else None, target.value
            )
        return record

    def claim(self, key: RequestKey, *, lease_seconds: float) -> RequestRecord | None:
        """Take a request for processing; None when someone else holds it or it is finished.

        A PROCESSING request whose lease has run out belongs to a worker that died (or timed
        out), and may be taken again: that is how SQS redelivery retries it.
        """
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        now = self._clock()
        record, _old = self._update(
            key,
            update=(
                "SET #status = :processing, attempts = attempts + :one,"
                " lease_until = :lease, updated_at = :now_ms"
            ),
            condition=("#status = :queued OR (#status = :processing AND lease_until < :now_ms)"),
            values={
                ":processing": RequestStatus.PROCESSING.value,
                ":queued": RequestStatus.QUEUED.value,
                ":one": 1,
                ":lease": epoch_ms(now + lease_seconds),
            },
        )
        return record

    def release(self, key: RequestKey, *, attempts: int) -> RequestRecord | None:
        """Hand back the claim of a failed attempt so that SQS's next delivery may retry it.

        The lease otherwise lasts as long as the invocation could have run, which is longer
        than the queue's visibility timeout: every redelivery would find it live and the
        message would reach the dead-letter queue with the request stuck in PROCESSING. The
        condition names the attempt, so a release never touches a claim taken since by
        another worker. None when the claim is no longer that attempt's.
        """
        record, _old = self._update(
            key,
            update="SET lease_until = :released, updated_at = :now_ms",
            condition="#status = :processing AND attempts = :attempts",
            values={
                ":released": 0,
                ":processing": RequestStatus.PROCESSING.value,
                ":attempts": attempts,
            },
        )
        return record

    def record_progress(self, key: RequestKey, progress: ProgressState) -> RequestRecord | None:
        """Store the latest progress; None when the request is not running or `seq` is stale.

        The returned record carries cancel_requested, so a worker learns about a cancel on its
        next progress report without another read.
        """
        text = dump_json(progress.model_dump(mode="json"), field="progress")
        record, _old = self._update(
            key,
            update="SET progress = :progress, progress_seq = :seq, updated_at = :now_ms",
            condition=(
                "#status = :processing"
                " AND (attribute_not_exists(progress_seq) OR progress_seq < :seq)"
            ),
            values={
                ":processing": RequestStatus.PROCESSING.value,
                ":progress": text,
                ":seq": progress.seq,
            },
        )
        return record

    def complete(self, key: RequestKey, result: Any) -> RequestRecord:
        text = dump_json(result, field="result")
        return self._transition(
            key,
            RequestStatus.COMPLETED,
            (RequestStatus.PROCESSING,),
            sets="#result = :result",
            values={":result": text},
            names={"#result": "result"},
        )

    def fail(self, key: RequestKey, error: ErrorInfo) -> RequestRecord:
        text = dump_json(error.model_dump(mode="json"), field="error")
        return self._transition(
            key,
            RequestStatus.FAILED,
            (RequestStatus.QUEUED, RequestStatus.PROCESSING),
            sets="#error = :error",
            values={":error": text},
            names={"#error": "error"},
        )

    def mark_cancelled(self, key: RequestKey) -> RequestRecord:
        """The worker stopped on a cancel request: PROCESSING → CANCELLED."""
        return self._transition(key, RequestStatus.CANCELLED, (RequestStatus.PROCESSING,))

    def request_cancel(self, key: RequestKey) -> RequestRecord:
        """Cancel on the client's behalf.

        A QUEUED request is cancelled at once (the worker's claim will then fail); a running
        one is flagged and its worker stops at its next progress report; a finished one is
        returned unchanged, since cancelling finished work is not an error for the client.
        States only move forward, so when the second write loses a race the request has
        just finished and is returned as it now stands.
        """
        record, old = self._update(
            key,
            update="SET #status = :cancelled, cancel_requested = :true, updated_at = :now_ms",
            condition="#status = :queued",
            values={
                ":cancelled": RequestStatus.CANCELLED.value,
                ":queued": RequestStatus.QUEUED.value,
                ":true": True,
            },
        )
        if record is None and old is not None and old.status is RequestStatus.PROCESSING:
            record, old = self._update(
                key,
                update="SET cancel_requested = :true, updated_at = :now_ms",
                condition="#status = :processing",
                values={":processing": RequestStatus.PROCESSING.value, ":true": True},
            )
        if record is not None:
            return record
        if old is None:
            raise IllegalTransitionError(key.request_id, None, RequestStatus.CANCELLED.value)
        return old
