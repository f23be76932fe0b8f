"""Lambda's SQS event source mapping: long-poll, invoke with a batch, delete what succeeded.

The contract the processor relies on is the service's: a batch fails as a whole when the
invocation fails; with `batchItemFailures` only the listed records stay on the queue; a
record left on the queue comes back after the visibility timeout; the queue's redrive
policy (enforced by the emulator) moves it to the dead-letter queue after
`maxReceiveCount` receives. Concurrency is bounded by the number of pollers, one per
concurrent invocation the function may have (its reserved concurrency: the stack's
`sqs_concurrency`); the records of one batch then run side by side inside the invocation,
as the processor runs them on Lambda.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from streamer_infra.local._invoker import Invocation, Invoker, LocalFunction
from streamer_infra.local._threads import DaemonPool

__all__ = ["QueueEventSource", "sqs_event", "succeeded_receipts"]

logger = logging.getLogger("streamer.local.sqs")


def _lambda_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    """SQS API attribute casing (StringValue) to the casing Lambda events use (stringValue)."""
    out: dict[str, Any] = {
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": value.get("DataType", "String"),
    }
    if "StringValue" in value:
        out["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        out["binaryValue"] = value["BinaryValue"]
    return out


def sqs_event(
    messages: Iterable[Mapping[str, Any]], *, queue_arn: str, region: str
) -> dict[str, Any]:
    """The event Lambda hands a function for one batch of received messages."""
    records = [
        {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": dict(message.get("Attributes", {})),
            "messageAttributes": {
                name: _lambda_attribute(value)
                for name, value in message.get("MessageAttributes", {}).items()
            },
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": region,
        }
        for message in messages
    ]
    return {"Records": records}


def succeeded_receipts(
    messages: list[Mapping[str, Any]], invocation: Invocation
) -> list[Mapping[str, Any]]:
    """The messages to delete after an invocation, by Lambda's partial-batch rules.

    An identifier that names no record of the batch makes the whole batch a failure,
    as it does on AWS, so a buggy processor cannot silently drop work.
    """
    if not invocation.ok:
        return []
    result = invocation.result
    failures = result.get("batchItemFailures") if isinstance(result, dict) else None
    if not failures:
        return list(messages)
    ids = {message["MessageId"] for message in messages}
    failed: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(identifier, str) or identifier not in ids:
            return []
        failed.add(identifier)
    return [message for message in messages if message["MessageId"] not in failed]


class QueueEventSource:
    """Pollers feeding one queue to one function, started and stopped with the stack."""

    def __init__(
        self,
        *,
        sqs: Any,
        queue_url: str,
        queue_arn: str,
        region: str,
        function: LocalFunction,
        invoker: Invoker,
        max_concurrency: int,
        batch_size: int = 10,
        wait_seconds: int = 20,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._queue_arn = queue_arn
        self._region = region
        self._function = function
        self._invoker = invoker
        self._batch_size = batch_size
        self._concurrency = max_concurrency
        self._wait_seconds = wait_seconds
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._receiving: set[asyncio.Task[Any]] = set()
        # Receives block for up to `wait_seconds` (20, SQS's longest poll, as Lambda's
        # event source mapping polls): an idle poller then makes one request every 20 s
        # rather than one a second, each of which would take the GIL from the gateway.
        # moto wakes a waiting receive when a message arrives or becomes visible again.
        # Their own threads keep them off the pool the functions run on.
        self._pool = DaemonPool(max_concurrency, "sqs-poll")

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._poll()) for _ in range(self._concurrency)]

    async def stop(self, grace: float = 5.0) -> None:
        """Stop polling; a batch being processed gets `grace` seconds to finish."""
        self._stopping.set()
        # A poller waiting on a receive holds no work: no reason to wait out its long poll.
        for task in self._receiving:
            task.cancel()
        if self._tasks:
            _, running = await asyncio.wait(self._tasks, timeout=grace)
            for task in running:
                task.cancel()
            for task in running:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._pool.shutdown()

    async def _poll(self) -> None:
        current = asyncio.current_task()
        assert current is not None
        while not self._stopping.is_set():
            self._receiving.add(current)
            try:
                response = await asyncio.wrap_future(self._pool.submit(self._receive))
            except Exception as exc:
                if self._stopping.is_set():
                    return
                logger.warning("receiving from %s failed: %s", self._queue_url, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 1.0)
                continue
            finally:
                self._receiving.discard(current)
            messages: list[Mapping[str, Any]] = response.get("Messages", [])
            if not messages:
                continue
            event = sqs_event(messages, queue_arn=self._queue_arn, region=self._region)
            invocation = await self._invoker.invoke(self._function, event)
            done = succeeded_receipts(messages, invocation)
            if done:
                try:
                    await asyncio.wrap_future(self._pool.submit(self._delete, done))
                except Exception as exc:
                    logger.warning("deleting processed messages failed: %s", exc)

    def _receive(self) -> dict[str, Any]:
        response: dict[str, Any] = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=self._batch_size,
            WaitTimeSeconds=self._wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return response

    def _delete(self, messages: list[Mapping[str, Any]]) -> None:
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            self._sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)
                ],
            )
