"""The SQS consumer: runs queued requests and streams their progress to clients, and sends
published events that were handed to the queue (``publish`` messages and fan-out shards,
:mod:`.._processor.queued`).

The records of one batch run side by side, each on a thread of its own: two jobs queued a
moment apart often land in the same batch, and run one after the other the second would
wait for the whole first job (minutes, for long ones) while the batch could outlive the
invocation. Each record gets the invocation's whole remaining time, as it would alone.

Each record that fails is reported alone (``batchItemFailures``, which the event source
mapping must enable with ``ReportBatchItemFailures``); the others are deleted from the
queue when the invocation returns, and the failed ones come back after the queue's
visibility timeout, as before. A record whose thread cannot even start stays on the queue.

Every post an invocation makes for a fan-out passes one :class:`Pacer`, shared by the
records of its batch: the per-invocation rate that keeps all of the function's invocations
together under the account's management-API quota (:mod:`.._delivery.sharding`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from streamer_handlers._delivery.sharding import FanoutLimits, Pacer
from streamer_handlers._lambda.observability import flush_metrics, logger, start_invocation
from streamer_handlers._lambda.runtime import Runtime, get_runtime
from streamer_handlers._processor.jobs import process_message
from streamer_handlers._processor.queued import process_queued, queued_message

MAX_PARALLEL_RECORDS = 10
"""Records of one batch run at once (SQS hands a function at most 10 per batch unless a
batching window is configured); any beyond wait for a free slot."""


def _handle(runtime: Runtime, record: Mapping[str, Any], context: Any, pacer: Pacer) -> None:
    message_id = str(record.get("messageId", ""))
    start_invocation(message_id, sqs_message_id=message_id)
    body = str(record.get("body", ""))
    try:
        queued = queued_message(body)
        if queued is not None:
            process_queued(runtime, queued, message_id=message_id, pacer=pacer, context=context)
            return
        process_message(
            runtime,
            body,
            record.get("attributes") or {},
            record.get("messageAttributes") or {},
            context,
        )
    except Exception as error:
        logger.warning("record left on the queue", extra={"error": type(error).__name__})
        raise


def run_records(
    records: Sequence[Mapping[str, Any]],
    handle: Callable[[Mapping[str, Any]], None],
    *,
    parallel: int = MAX_PARALLEL_RECORDS,
) -> list[str]:
    """Run ``handle`` on every record, up to ``parallel`` at once; the ids of those that failed.

    Records with the same body (SQS may deliver one message twice, even in one batch) run
    one after the other, so the second finds the request finished and is dropped instead
    of finding it busy and going back to the queue. When there is only one group it runs
    on the calling thread. The others get daemon threads: a job may legitimately run for
    as long as the invocation, and a process that is told to stop (the local stack on
    Ctrl-C) must not wait for it.
    """
    if parallel < 1:
        raise ValueError("parallel must be at least 1")
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        groups.setdefault(str(record.get("body", "")), []).append(record)
    failed: list[str] = []
    lock = threading.Lock()
    slots = threading.BoundedSemaphore(parallel)

    def run(group: list[Mapping[str, Any]]) -> None:
        try:
            for record in group:
                try:
                    handle(record)
                except BaseException:
                    with lock:
                        failed.append(str(record.get("messageId", "")))
        finally:
            slots.release()

    threads: list[threading.Thread] = []
    for index, group in enumerate(groups.values()):
        slots.acquire()
        if len(groups) == 1:
            run(group)
            continue
        thread = threading.Thread(
            target=run, args=(group,), name=f"streamer-record-{index}", daemon=True
        )
        try:
            thread.start()
        except RuntimeError:
            slots.release()
            logger.exception("no thread for a record; it stays on the queue")
            with lock:
                failed.extend(str(record.get("messageId", "")) for record in group)
            continue
        threads.append(thread)
    for thread in threads:
        thread.join()
    order = {str(record.get("messageId", "")): i for i, record in enumerate(records)}
    return sorted(failed, key=lambda message_id: order.get(message_id, len(order)))


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point for the work queue's event source mapping."""
    start_invocation(getattr(context, "aws_request_id", None))
    runtime = get_runtime()
    records: list[Mapping[str, Any]] = list(event.get("Records") or [])
    pacer = Pacer(FanoutLimits.from_env().sends_per_second)
    try:
        failed = run_records(records, lambda record: _handle(runtime, record, context, pacer))
        if failed:
            logger.info("records left for retry", extra={"count": len(failed)})
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}
    finally:
        flush_metrics()
