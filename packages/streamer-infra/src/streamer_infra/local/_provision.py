"""Creates, in the emulator, the same resources the Pulumi program creates on AWS.

Tables come from core's specs (the one source of truth); the work queue redrives to its
dead-letter queue after the receive count the processor is configured with, so a poison
message ends up where it would on AWS.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3
from streamer_core.storage import create_tables

__all__ = ["Provisioned", "aws_client", "provision"]


@dataclass(frozen=True)
class Provisioned:
    tables: dict[str, str]
    queue_url: str
    queue_arn: str
    dead_letter_queue_url: str
    dead_letter_queue_arn: str
    jwt_secret_id: str


def aws_client(service: str, endpoint_url: str, region: str) -> Any:
    """A client bound to the emulator explicitly, whatever the environment says."""
    session: Any = boto3.session.Session()
    return session.client(
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _queue_arn(sqs: Any, url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


def provision(
    endpoint_url: str,
    *,
    env: str,
    region: str,
    jwt_public_key_pem: str,
    max_receive_count: int,
    visibility_timeout: int,
) -> Provisioned:
    """Create (idempotently) the tables, the queues and the JWT public-key secret."""
    tables = create_tables(aws_client("dynamodb", endpoint_url, region), env)

    sqs = aws_client("sqs", endpoint_url, region)
    dlq_url = str(
        sqs.create_queue(
            QueueName=f"streamer-{env}-dead-letter",
            Attributes={"MessageRetentionPeriod": str(14 * 86400)},
        )["QueueUrl"]
    )
    dlq_arn = _queue_arn(sqs, dlq_url)
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
    queue_url = str(
        sqs.create_queue(
            QueueName=f"streamer-{env}-work",
            Attributes={
                "VisibilityTimeout": str(visibility_timeout),
                "RedrivePolicy": json.dumps(redrive),
            },
        )["QueueUrl"]
    )

    secrets = aws_client("secretsmanager", endpoint_url, region)
    secret_id = f"streamer/{env}/jwt-public-key"
    try:
        secrets.create_secret(Name=secret_id, SecretString=jwt_public_key_pem)
    except secrets.exceptions.ResourceExistsException:
        secrets.put_secret_value(SecretId=secret_id, SecretString=jwt_public_key_pem)

    return Provisioned(
        tables=tables,
        queue_url=queue_url,
        queue_arn=_queue_arn(sqs, queue_url),
        dead_letter_queue_url=dlq_url,
        dead_letter_queue_arn=dlq_arn,
        jwt_secret_id=secret_id,
    )
