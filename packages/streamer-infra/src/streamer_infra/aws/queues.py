"""The work queue the router feeds and the processor drains, and its dead-letter queue."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi_aws as aws

from streamer_infra._queue_rules import visibility_timeout
from streamer_infra.aws.config import StackSettings
from streamer_infra.aws.kms import StackKey

RETENTION_SECONDS = 4 * 24 * 3600
DEAD_LETTER_RETENTION_SECONDS = 14 * 24 * 3600


@dataclass(frozen=True)
class Queues:
    """`work` is what route metadata calls `queue:work`, `dead_letter` is `queue:dead_letter`."""

    work: aws.sqs.Queue
    dead_letter: aws.sqs.Queue


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
