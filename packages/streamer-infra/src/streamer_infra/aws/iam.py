"""One IAM role per function, granting exactly what the function's route metadata names.

Handlers declare their needs with symbolic resources (`table:connections`, `queue:work`, ...);
this module is the only place those symbols become ARNs. A symbol it does not know, or a `*`
resource on an action that has resource-level permissions, stops the deployment instead of
widening a policy.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
from streamer_handlers.deployment import FunctionSpec, Grant

from streamer_infra.aws.config import METRICS_NAMESPACE, StackSettings

# Actions AWS offers no resource-level permission for: `*` is the only valid resource. Each
# reason is repeated in the package README; nothing outside this table may use `*`.
WILDCARD_ACTIONS: Mapping[str, str] = {
    "xray:PutTraceSegments": "X-Ray trace upload has no resource-level permissions.",
    "xray:PutTelemetryRecords": "X-Ray telemetry upload has no resource-level permissions.",
    "xray:GetSamplingRules": "X-Ray sampling rules are account-wide; no resource ARN exists.",
    "xray:GetSamplingTargets": "X-Ray sampling targets are account-wide; no resource ARN exists.",
    "cloudwatch:PutMetricData": (
        "CloudWatch metrics have no ARN; the statement is limited to the Streamer namespace "
        "with the cloudwatch:namespace condition instead."
    ),
}

TRACING_ACTIONS = ("xray:PutTraceSegments", "xray:PutTelemetryRecords")
QUEUE_CONSUMER_ACTIONS = (
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
)
LOG_WRITE_ACTIONS = ("logs:CreateLogStream", "logs:PutLogEvents")

Resolver = Callable[[str], pulumi.Input[str]]


class UnknownResourceError(ValueError):
    """A grant names a resource symbol this program does not create."""


@dataclass
class SymbolTable:
    """Symbol -> ARN. `table:NAME/index/*` and other suffixes extend the base ARN."""

    arns: dict[str, pulumi.Input[str]] = field(default_factory=dict)

    def resolve(self, symbol: str) -> pulumi.Input[str]:
        """Unknown symbols raise: a typo in metadata must not become a broader policy."""
        if symbol == "*":
            return "*"
        if symbol in self.arns:
            return self.arns[symbol]
        base, sep, suffix = symbol.partition("/")
        if sep and base in self.arns:
            return pulumi.Output.concat(self.arns[base], "/", suffix)
        raise UnknownResourceError(
            f"route metadata names resource {symbol!r}, which this stack does not create "
            f"(known: {sorted(self.arns)})"
        )


def check_wildcards(function: str, grant: Grant) -> None:
    """`*` is accepted only when every action of the grant is a documented exception."""
    if "*" not in grant.resources:
        return
    others = sorted(set(grant.actions) - set(WILDCARD_ACTIONS))
    if others:
        raise ValueError(
            f"{function}: resource '*' requested for {others}; only {sorted(WILDCARD_ACTIONS)} "
            "may use it"
        )


def _condition(actions: tuple[str, ...]) -> dict[str, Any] | None:
    if "cloudwatch:PutMetricData" in actions:
        return {"StringEquals": {"cloudwatch:namespace": METRICS_NAMESPACE}}
    return None


def _statement(
    sid: str, actions: tuple[str, ...], resources: list[pulumi.Input[str]]
) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "Sid": sid,
        "Effect": "Allow",
        "Action": sorted(actions),
        "Resource": resources,
    }
    condition = _condition(actions)
    if condition is not None:
        statement["Condition"] = condition
    return statement


def policy_statements(
    spec: FunctionSpec, resolve: Resolver, log_group_arn: pulumi.Input[str]
) -> list[dict[str, Any]]:
    """Grants first (`Grant0`, `Grant1`, ...), then what this program itself turns on for the
    function: its own log group, X-Ray for active tracing, and the SQS event source mapping."""
    statements = []
    for index, grant in enumerate(spec.grants):
        check_wildcards(spec.name, grant)
        resources = [resolve(symbol) for symbol in grant.resources]
        statements.append(_statement(f"Grant{index}", tuple(grant.actions), resources))
    statements.append(
        _statement("WriteOwnLogs", LOG_WRITE_ACTIONS, [pulumi.Output.concat(log_group_arn, ":*")])
    )
    if not _granted(spec, TRACING_ACTIONS, "*"):
        statements.append(_statement("ActiveTracing", TRACING_ACTIONS, ["*"]))
    if spec.trigger == "sqs":
        if not _granted(spec, QUEUE_CONSUMER_ACTIONS, "queue:work"):
            statements.append(
                _statement("ConsumeWorkQueue", QUEUE_CONSUMER_ACTIONS, [resolve("queue:work")])
            )
        if not _granted(spec, ("kms:Decrypt",), "kms:key"):
            statements.append(
                _statement("DecryptWorkQueue", ("kms:Decrypt",), [resolve("kms:key")])
            )
    return statements


def _granted(spec: FunctionSpec, actions: tuple[str, ...], symbol: str) -> bool:
    """True when the metadata already allows every one of `actions` on `symbol`."""
    allowed = {a for g in spec.grants if symbol in g.resources for a in g.actions}
    return set(actions) <= allowed


LAMBDA_TRUST_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


def create_role(
    spec: FunctionSpec,
    settings: StackSettings,
    resolve: Resolver,
    log_group_arn: pulumi.Input[str],
) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
    """An inline policy rather than managed ones: it lives and dies with the role, and no
    other principal can ever be attached to it."""
    role = aws.iam.Role(
        f"{spec.name}-role",
        name=settings.name(f"{spec.name}-function"),
        description=f"Streamer {settings.environment}: execution role of the {spec.name} function",
        assume_role_policy=LAMBDA_TRUST_POLICY,
        tags=settings.tags,
    )
    document = {
        "Version": "2012-10-17",
        "Statement": policy_statements(spec, resolve, log_group_arn),
    }
    policy = aws.iam.RolePolicy(
        f"{spec.name}-policy",
        role=role.id,
        name=f"{spec.name}-least-privilege",
        policy=pulumi.Output.json_dumps(document),
    )
    return role, policy
