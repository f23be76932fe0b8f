"""The account, partition and region the stack deploys into, read from the provider.

Nothing account-specific lives in the program: every ARN that cannot come from a resource is
built from these values, so the same code deploys to any account, region or partition.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class Account:
    """Where the stack runs; region is plain config, the rest resolves at deploy time."""

    region: str
    account_id: pulumi.Output[str]
    partition: pulumi.Output[str]
    dns_suffix: pulumi.Output[str]


def current_account() -> Account:
    """Ask the provider who we are instead of writing an account id into the code."""
    region = pulumi.Config("aws").require("region")
    identity = aws.get_caller_identity_output()
    partition = aws.get_partition_output()
    return Account(
        region=region,
        account_id=identity.account_id,
        partition=partition.partition,
        dns_suffix=partition.dns_suffix,
    )
