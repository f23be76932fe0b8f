"""The Lambda functions: one per FunctionSpec, each with its own log group and role."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
from streamer_handlers.deployment import FunctionSpec, function_environment

from streamer_infra.aws.config import DEFAULT_RUNTIME, SERVICE, StackSettings
from streamer_infra.aws.iam import Resolver, create_role
from streamer_infra.aws.kms import StackKey


@dataclass(frozen=True)
class DeployedFunction:
    """What the API, alarms and outputs need to know about one function."""

    spec: FunctionSpec
    function: aws.lambda_.Function
    role: aws.iam.Role
    log_group: aws.cloudwatch.LogGroup

    @property
    def name(self) -> str:
        return self.spec.name


def function_name(settings: StackSettings, spec: FunctionSpec) -> str:
    """`streamer-connect-dev`: the name the deployment document's troubleshooting uses."""
    return f"{SERVICE}-{spec.name}-{settings.environment}"


def create_log_group(
    settings: StackSettings, key: StackKey, name: pulumi.Input[str], resource_name: str
) -> aws.cloudwatch.LogGroup:
    """Created before its function so retention and encryption apply from the first line."""
    return aws.cloudwatch.LogGroup(
        resource_name,
        name=name,
        retention_in_days=settings.log_retention_days,
        kms_key_id=key.arn,
        tags=settings.tags,
    )


def base_environment(
    settings: StackSettings,
    table_names: Mapping[str, pulumi.Input[str]],
    queue_url: pulumi.Input[str],
    public_key_secret_arn: pulumi.Input[str],
    management_endpoint: pulumi.Input[str],
    processor_timeout: int,
) -> dict[str, pulumi.Input[str]]:
    """This stack's values for the handlers' one environment contract
    (`streamer_handlers.deployment.function_environment`), which the local stack uses too.

    The secret's ARN is always there: Secrets Manager stays the key's home, and the source the
    functions read when the key is not given inline (`jwtPublicKeyInEnvironment` false)."""
    # The same value the secret holds (both come from `jwtPublicKey`); the handlers prefer
    # it to the secret. It is a public key: unsecret, or Pulumi would mark the whole
    # environment secret and previews would hide every variable. Lambda still encrypts
    # the variables at rest with the stack key (`kms_key_arn`).
    inline_key: pulumi.Input[str] | None = (
        pulumi.Output.unsecret(settings.jwt_public_key)
        if settings.jwt_public_key_in_environment
        else None
    )
    return function_environment(
        settings.environment,
        tables=table_names,
        queue_url=queue_url,
        management_endpoint=management_endpoint,
        jwt_public_key_secret=public_key_secret_arn,
        jwt_public_key=inline_key,
        log_level=settings.log_level,
        app=settings.app,
        jwt_issuer=settings.jwt_issuer,
        jwt_audience=settings.jwt_audience,
        allowed_tenants=settings.allowed_tenants,
        rate_limit=settings.rate_limit,
        max_receive_count=settings.max_receive_count,
        processor_timeout=processor_timeout,
    )


def create_function(
    spec: FunctionSpec,
    settings: StackSettings,
    key: StackKey,
    resolve: Resolver,
    environment: Mapping[str, pulumi.Input[str]],
    code: pulumi.Archive,
) -> DeployedFunction:
    """arm64 (cheaper per GB-second, all dependencies ship aarch64 wheels), active tracing, and
    reserved concurrency so one runaway function cannot starve the account or its neighbours."""
    name = function_name(settings, spec)
    log_group = create_log_group(settings, key, f"/aws/lambda/{name}", f"{spec.name}-logs")
    role, policy = create_role(spec, settings, resolve, log_group.arn)
    function = aws.lambda_.Function(
        f"{spec.name}-function",
        name=name,
        description=f"Streamer {settings.environment}: {spec.name} ({spec.trigger})",
        role=role.arn,
        runtime=DEFAULT_RUNTIME,
        architectures=["arm64"],
        handler=spec.handler,
        code=code,
        memory_size=settings.memory_mb or spec.memory,
        timeout=spec.timeout,
        reserved_concurrent_executions=settings.reserved_concurrency,
        tracing_config=aws.lambda_.FunctionTracingConfigArgs(mode="Active"),
        environment=aws.lambda_.FunctionEnvironmentArgs(variables=dict(environment)),
        kms_key_arn=key.arn,
        logging_config=aws.lambda_.FunctionLoggingConfigArgs(
            log_format="Text", log_group=log_group.name
        ),
        tags=settings.tags,
        opts=pulumi.ResourceOptions(depends_on=[log_group, policy]),
    )
    return DeployedFunction(spec=spec, function=function, role=role, log_group=log_group)


def create_queue_trigger(
    settings: StackSettings, deployed: DeployedFunction, queue_arn: pulumi.Input[str]
) -> aws.lambda_.EventSourceMapping:
    """Partial batch responses so one failed record is retried alone; the mapping's maximum
    concurrency stays within the function's reserved concurrency, otherwise Lambda throttles
    polled batches and every throttle spends one of the message's receive attempts."""
    return aws.lambda_.EventSourceMapping(
        f"{deployed.name}-queue-trigger",
        event_source_arn=queue_arn,
        function_name=deployed.function.arn,
        batch_size=settings.batch_size,
        function_response_types=["ReportBatchItemFailures"],
        scaling_config=aws.lambda_.EventSourceMappingScalingConfigArgs(
            maximum_concurrency=max(2, settings.reserved_concurrency)
        ),
        tags=settings.tags,
    )
