"""Log groups of the WebSocket API and the account setting API Gateway needs to write them.

API Gateway writes logs with a role set once per account and region (`apigateway.Account`),
not per API. Without it, a stage with access logs fails to deploy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from streamer_infra.aws.config import StackSettings
from streamer_infra.aws.functions import create_log_group
from streamer_infra.aws.kms import StackKey

LOG_DELIVERY_ACTIONS = (
    "logs:CreateLogStream",
    "logs:DescribeLogGroups",
    "logs:DescribeLogStreams",
    "logs:PutLogEvents",
)

API_GATEWAY_TRUST_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "apigateway.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


@dataclass(frozen=True)
class ApiLogGroups:
    """`access` gets the stage's access log; `execution` is the group API Gateway writes its
    own execution log to, created here so that it is encrypted and expires."""

    access: aws.cloudwatch.LogGroup
    execution: aws.cloudwatch.LogGroup


def create_api_log_groups(
    settings: StackSettings, key: StackKey, api_id: pulumi.Input[str], stage: str
) -> ApiLogGroups:
    """Left to itself, API Gateway creates the execution group unencrypted and keeps it forever."""
    access = create_log_group(
        settings, key, f"/aws/apigateway/{settings.name('websocket')}/access", "api-access-logs"
    )
    execution = create_log_group(
        settings,
        key,
        pulumi.Output.concat("API-Gateway-Execution-Logs_", api_id, "/", stage),
        "api-execution-logs",
    )
    return ApiLogGroups(access=access, execution=execution)


def create_account_logging(
    settings: StackSettings, groups: ApiLogGroups
) -> aws.apigateway.Account | None:
    """Skipped with `manageApiGatewayAccount: false`, for accounts where another stack or
    team already owns this account-wide setting. The role may only write to this stack's two
    log groups, unlike AWS's managed policy, which allows every log group."""
    if not settings.manage_api_gateway_account:
        return None
    role = aws.iam.Role(
        "api-gateway-logging-role",
        name=settings.name("apigateway-logs"),
        description=f"Streamer {settings.environment}: API Gateway log delivery",
        assume_role_policy=API_GATEWAY_TRUST_POLICY,
        tags=settings.tags,
    )
    document = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DeliverApiLogs",
                "Effect": "Allow",
                "Action": list(LOG_DELIVERY_ACTIONS),
                "Resource": [
                    groups.access.arn,
                    pulumi.Output.concat(groups.access.arn, ":*"),
                    groups.execution.arn,
                    pulumi.Output.concat(groups.execution.arn, ":*"),
                ],
            }
        ],
    }
    policy = aws.iam.RolePolicy(
        "api-gateway-logging-policy",
        role=role.id,
        name="deliver-api-logs",
        policy=pulumi.Output.json_dumps(document),
    )
    return aws.apigateway.Account(
        "api-gateway-account",
        cloudwatch_role_arn=role.arn,
        opts=pulumi.ResourceOptions(depends_on=[policy]),
    )
