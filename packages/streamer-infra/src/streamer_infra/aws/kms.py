"""The stack's customer managed KMS key: tables, queues, secrets, logs and alarms topic use it.

One key per stack keeps the blast radius of a key policy mistake to one environment and lets
CloudTrail show every decrypt of this environment's data in one place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from streamer_infra.aws.account import Account
from streamer_infra.aws.config import StackSettings


@dataclass(frozen=True)
class StackKey:
    """The key and its alias; `arn` is what resource policies and IAM statements name."""

    key: aws.kms.Key
    alias: aws.kms.Alias

    @property
    def arn(self) -> pulumi.Output[str]:
        return self.key.arn


def key_policy(account_id: str, partition: str, region: str, dns_suffix: str) -> dict[str, Any]:
    """Account root keeps control (so IAM policies apply); the two services that cannot use
    IAM roles to reach the key (CloudWatch Logs, CloudWatch alarms publishing to an encrypted
    SNS topic) get exactly the operations they need, bound to this account."""
    root = f"arn:{partition}:iam::{account_id}:root"
    logs_arn = f"arn:{partition}:logs:{region}:{account_id}:log-group:*"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AccountAdministration",
                "Effect": "Allow",
                "Principal": {"AWS": root},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "CloudWatchLogsEncryption",
                "Effect": "Allow",
                "Principal": {"Service": f"logs.{region}.{dns_suffix}"},
                "Action": [
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*",
                ],
                "Resource": "*",
                "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": logs_arn}},
            },
            {
                "Sid": "CloudWatchAlarmsToEncryptedTopic",
                "Effect": "Allow",
                "Principal": {"Service": f"cloudwatch.{dns_suffix}"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
            },
        ],
    }


def create_key(settings: StackSettings, account: Account) -> StackKey:
    """Rotation on, a 30-day deletion window so a mistaken destroy can still be undone."""
    policy = pulumi.Output.all(account.account_id, account.partition, account.dns_suffix).apply(
        lambda v: json.dumps(key_policy(v[0], v[1], account.region, v[2]))
    )
    key = aws.kms.Key(
        "key",
        description=f"Streamer {settings.environment}: tables, queues, secrets and logs at rest",
        enable_key_rotation=True,
        deletion_window_in_days=30,
        policy=policy,
        tags=settings.tags,
    )
    alias = aws.kms.Alias(
        "key-alias", name=f"alias/{settings.name('data')}", target_key_id=key.key_id
    )
    return StackKey(key=key, alias=alias)
