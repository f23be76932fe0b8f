"""The SQS consumer: runs queued requests and streams their progress to clients.

Records are processed with Powertools' batch utility so that one failing record is
reported alone (``batchItemFailures``) and the others are deleted from the queue: the
event source mapping must enable ``ReportBatchItemFailures``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from ..observability import flush_metrics, logger, start_invocation
from ..processing import process_message
from ..runtime import get_runtime


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point for the work queue's event source mapping."""
    start_invocation(getattr(context, "aws_request_id", None))
    runtime = get_runtime()

    def handle(record: SQSRecord) -> None:
        start_invocation(record.message_id, sqs_message_id=record.message_id)
        try:
            process_message(
                runtime,
                record.body,
                record.raw_event.get("attributes") or {},
                record.raw_event.get("messageAttributes") or {},
                context,
            )
        except Exception as error:
            logger.warning("record left on the queue", extra={"error": type(error).__name__})
            raise

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    try:
        response = process_partial_response(
            event=event, record_handler=handle, processor=processor, context=context
        )
        failures = response.get("batchItemFailures", [])
        if failures:
            logger.info("records left for retry", extra={"count": len(failures)})
        return dict(response)
    finally:
        flush_metrics()
