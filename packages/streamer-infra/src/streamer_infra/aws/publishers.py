"""What a backend needs to publish through the work queue, as one policy to attach.

Any backend may publish to a topic of one tenant by sending a ``publish`` message to the work
queue (docs/protocol.md): IAM is the authorisation, so whoever may send to the queue may
publish, to any tenant. The queue is encrypted with the stack's key, so sending also needs
the key (``kms:GenerateDataKey`` to encrypt, ``kms:Decrypt`` to reuse a data key); this
policy grants exactly those, the key only through SQS, and nothing that reads or deletes
messages. Attach it to the role of each backend that publishes; the stack exports its ARN
(``publisherPolicyArn``) and the queue's URL (``workQueueUrl``).
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws

from streamer_infra.aws.account import Account
from streamer_infra.aws.config import StackSettings
from streamer_infra.aws.kms import StackKey
from streamer_infra.aws.queues import Queues

PUBLISH_ACTIONS = ("sqs:SendMessage",)
ENCRYPT_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey")


def publisher_document(
    queue_arn: str, key_arn: str, region: str, dns_suffix: str
) -> dict[str, Any]:
    """Send to this queue, and use this key for nothing but SQS in this region."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "SendToWorkQueue",
                "Effect": "Allow",
                "Action": list(PUBLISH_ACTIONS),
                "Resource": [queue_arn],
            },
            {
                "Sid": "EncryptForWorkQueue",
                "Effect": "Allow",
                "Action": list(ENCRYPT_ACTIONS),
                "Resource": [key_arn],
                "Condition": {"StringEquals": {"kms:ViaService": f"sqs.{region}.{dns_suffix}"}},
            },
        ],
    }


def create_publisher_policy(
    settings: StackSettings, queues: Queues, key: StackKey, account: Account
) -> aws.iam.Policy:
    """A managed policy, unattached: which roles may publish is the account owner's choice."""
    document = pulumi.Output.all(queues.work.arn, key.arn, account.dns_suffix).apply(
        lambda v: json.dumps(publisher_document(v[0], v[1], account.region, v[2]))
    )
    return aws.iam.Policy(
        "publisher-policy",
        name=settings.name("publish"),
        description=(
            f"Streamer {settings.environment}: publish events to any tenant's topics through "
            "the work queue"
        ),
        policy=document,
        tags=settings.tags,
    )
