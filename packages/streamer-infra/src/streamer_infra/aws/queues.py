"""The work queue the router feeds and the processor drains, and its dead-letter queue."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi_aws as aws

from .config import MAX_VISIBILITY_TIMEOUT, StackSettings
from .kms import StackKey

# AWS's guidance for SQS-triggered functions: a message must stay invisible for several
# function timeouts, or a batch still being retried inside Lambda is delivered a second time.
VISIBILITY_TIMEOUT_FACTOR = 6
RETENTION_SECONDS = 4 * 24 * 3600
DEAD_LETTER_RETENTION_SECONDS = 14 * 24 * 3600


@dataclass(frozen=True)
class Queues:
    """`work` is what route metadata calls `queue:work`, `dead_letter` is `queue:dead_letter`."""

    work: aws.sqs.Queue
    dead_letter: aws.sqs.Queue


def visibility_timeout(processor_timeout: int) -> int:
    """Six processor timeouts; refuses a processor timeout SQS cannot cover."""
    seconds = VISIBILITY_TIMEOUT_FACTOR * processor_timeout
    if seconds > MAX_VISIBILITY_TIMEOUT:
        raise ValueError(
            f"processor timeout {processor_timeout}s needs a visibility timeout of {seconds}s, "
            f"over SQS's maximum of {MAX_VISIBILITY_TIMEOUT}s"
        )
    return seconds


def create_queues(settings: StackSettings, key: StackKey, processor_timeout: int) -> Queues:
    """The dead-letter queue keeps messages the longest SQS allows, for inspection and redrive;
    only the work queue may send to it (redrive_allow_policy)."""
    dead_letter = aws.sqs.Queue(
        "dead-letter-queue",
        name=settings.name("dead-letter"),
        kms_master_key_id=key.arn,
        kms_data_key_reuse_period_seconds=300,
        message_retention_seconds=DEAD_LETTER_RETENTION_SECONDS,
        tags=settings.tags,
    )
    work = aws.sqs.Queue(
        "work-queue",
        name=settings.name("work"),
        kms_master_key_id=key.arn,
        kms_data_key_reuse_period_seconds=300,
        visibility_timeout_seconds=visibility_timeout(processor_timeout),
        message_retention_seconds=RETENTION_SECONDS,
        redrive_policy=dead_letter.arn.apply(
            lambda arn: json.dumps(
                {"deadLetterTargetArn": arn, "maxReceiveCount": settings.max_receive_count}
            )
        ),
        tags=settings.tags,
    )
    aws.sqs.RedriveAllowPolicy(
        "dead-letter-redrive-allow",
        queue_url=dead_letter.url,
        redrive_allow_policy=work.arn.apply(
            lambda arn: json.dumps({"redrivePermission": "byQueue", "sourceQueueArns": [arn]})
        ),
    )
    return Queues(work=work, dead_letter=dead_letter)
