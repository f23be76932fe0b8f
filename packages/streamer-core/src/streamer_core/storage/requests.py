"""Requests and their life cycle: QUEUED → PROCESSING → COMPLETED | FAILED | CANCELLED.

Every state change is one conditional UpdateItem whose condition names the states it may
leave, so two workers, a redelivered SQS message or a late cancel can never move a request
twice: DynamoDB applies one of the racing writes and refuses the others.

Who follows a request is kept on the request itself, as a string set of connection ids
(``followers``), rather than in a subscriptions index: joining is an ``ADD`` in the same
write that creates or reads the request, and every write that records progress or an
outcome returns the set (``ReturnValues="ALL_NEW"``), so the worker learns whom to tell
without another request, and without an index that DynamoDB keeps only eventually
consistent. A write and a join are serialised on the item, so a follower either is in the
set a progress write returns or sees that progress in the snapshot its join returned.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Collection, Mapping
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
_CREATE_ATTEMPTS = 3
"""A create that finds an expired leftover replaces it, and a racing create can replace it
first; past a few rounds the item keeps changing under us and the caller should retry."""


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
        followers=frozenset(str(c) for c in item.get("followers", ())),
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
        """Store a new QUEUED request followed by ``connection_id``, or follow the stored one.

        The bool is True when this call created it. A client that retries after a lost
        acknowledgment gets the original request back, and its connection joins the
        followers while the request still runs (one conditional write either way); reusing
        the id for other work is a ConflictError and follows nothing. A finished request is
        returned as it is, unfollowed: nothing will be sent about it any more.
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
        values: dict[str, Any] = {
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
        values = {name: value for name, value in values.items() if value is not None}
        followers = frozenset({connection_id}) if connection_id else frozenset()
        created = {"owner": key.owner, "request_id": key.request_id, **values}
        for _ in range(_CREATE_ATTEMPTS):
            applied, old = self._create_or_follow(key, values, connection_id, int(now))
            if applied and old is None:
                return dataclasses.replace(_to_record(created), followers=followers), True
            existing = self._live_record(old)
            if applied and existing is not None:
                return dataclasses.replace(
                    existing, followers=existing.followers | followers
                ), False
            if existing is None:
                # An expired leftover DynamoDB has not deleted yet: it is replaced whole.
                if self._replace_expired(key, values, followers, int(now)):
                    return dataclasses.replace(_to_record(created), followers=followers), True
                continue
            if existing.action != action or existing.payload_hash != payload_hash:
                raise ConflictError(key.request_id)
            # Refused because it has finished: returned as it is, with nobody added.
            return existing, False
        raise StorageError(f"request {key.request_id!r} kept changing while it was created")

    def _create_or_follow(
        self, key: RequestKey, values: Mapping[str, Any], connection_id: str | None, now: int
    ) -> tuple[bool, dict[str, Any] | None]:
        """One UpdateItem: create the item from ``values``, or join the same running work.

        Every attribute is set with ``if_not_exists``, so on an existing item the write
        changes nothing but the followers. Returns whether the write applied, and the item
        as it was before (raw; None when there was none).
        """
        index = {name: i for i, name in enumerate(values)}
        names = {f"#a{i}": name for name, i in index.items()}
        expression_values = {f":a{index[name]}": attribute_value(v) for name, v in values.items()}
        sets = ", ".join(f"#a{i} = if_not_exists(#a{i}, :a{i})" for i in index.values())
        update = f"SET {sets}"
        if connection_id:
            update += " ADD followers :me"
            expression_values[":me"] = {"SS": [connection_id]}
        expression_values[":now"] = attribute_value(now)
        expression_values[":queued"] = attribute_value(RequestStatus.QUEUED.value)
        expression_values[":processing"] = attribute_value(RequestStatus.PROCESSING.value)
        action, digest, status = (index["action"], index["payload_hash"], index["status"])
        try:
            response = self._client.update_item(
                TableName=self._table,
                Key=self._key(key),
                UpdateExpression=update,
                # New, or the same work still running; anything else is only read back.
                ConditionExpression=(
                    "attribute_not_exists(request_id) OR (expires_at > :now"
                    f" AND #a{action} = :a{action} AND #a{digest} = :a{digest}"
                    f" AND #a{status} IN (:queued, :processing))"
                ),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=expression_values,
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            return False, rejected_item(exc)
        old: dict[str, Any] | None = response.get("Attributes") or None
        return True, old

    def _replace_expired(
        self, key: RequestKey, values: Mapping[str, Any], followers: frozenset[str], now: int
    ) -> bool:
        """Overwrite an expired leftover; False when a live item took its place meanwhile."""
        item = serialize_item(
            {
                "owner": key.owner,
                "request_id": key.request_id,
                **values,
                "followers": set(followers) or None,
            }
        )
        try:
            self._client.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(request_id) OR expires_at <= :now",
                ExpressionAttributeValues={":now": attribute_value(now)},
            )
        except ClientError as exc:
            rejected_item(exc)
            return False
        return True

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

        Every condition also requires the item to exist and be unexpired; :now_ms is the
        time to set `updated_at` from.
        """
        now = self._clock()
        expression_values = {
            ":now_s": attribute_value(int(now)),
            **{name: attribute_value(value) for name, value in values.items()},
        }
        if ":now_ms" in update or ":now_ms" in condition:
            # DynamoDB refuses a value that no expression uses.
            expression_values[":now_ms"] = attribute_value(epoch_ms(now))
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

    def follow(self, key: RequestKey, connection_id: str) -> tuple[RequestRecord | None, bool]:
        """Add ``connection_id`` to a running request's followers and read it, in one write.

        Returns the record and True when the connection now follows it (everything after
        this write is sent to it, everything before is in the record); the record as it is
        and False when it has already finished (nothing more will be sent); None and False
        when there is no such request. ``updated_at`` is left alone: it tells clients when
        the request last changed, and a new follower changes nothing about it.
        """
        record, old = self._update(
            key,
            update="ADD followers :me",
            condition="#status IN (:queued, :processing)",
            values={
                ":me": {connection_id},
                ":queued": RequestStatus.QUEUED.value,
                ":processing": RequestStatus.PROCESSING.value,
            },
        )
        if record is not None:
            return record, True
        return old, False

    def record_progress(
        self, key: RequestKey, progress: ProgressState, *, drop: Collection[str] = ()
    ) -> RequestRecord | None:
        """Store the latest progress; None when the request is not running or `seq` is stale.

        The returned record carries cancel_requested, so a worker learns about a cancel on its
        next progress report without another read, and the followers to send it to.
        ``drop`` names followers found gone (410) since the last write: they leave the set
        in this same write.
        """
        text = dump_json(progress.model_dump(mode="json"), field="progress")
        values: dict[str, Any] = {
            ":processing": RequestStatus.PROCESSING.value,
            ":progress": text,
            ":seq": progress.seq,
        }
        update = "SET progress = :progress, progress_seq = :seq, updated_at = :now_ms"
        if drop:
            update += " DELETE followers :gone"
            values[":gone"] = set(drop)
        record, _old = self._update(
            key,
            update=update,
            condition=(
                "#status = :processing"
                " AND (attribute_not_exists(progress_seq) OR progress_seq < :seq)"
            ),
            values=values,
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
