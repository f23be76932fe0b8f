"""The whole Streamer stack as one function, so the CLI and the tests run the same code.

Order matters only where values flow: the API exists before the functions (they need its
management endpoint), the functions before the routes (routes need their ARNs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
from streamer_handlers.deployment import FunctionSpec, Settings, function_specs, load_app

from streamer_infra.aws.account import Account, current_account
from streamer_infra.aws.alarms import create_alarm_topic, create_alarms
from streamer_infra.aws.api import create_api, wire_api
from streamer_infra.aws.api_logs import create_account_logging, create_api_log_groups
from streamer_infra.aws.config import StackSettings, load_settings
from streamer_infra.aws.dashboard import create_dashboard
from streamer_infra.aws.functions import (
    DeployedFunction,
    base_environment,
    create_function,
    create_queue_trigger,
)
from streamer_infra.aws.iam import SymbolTable
from streamer_infra.aws.kms import create_key
from streamer_infra.aws.publishers import create_publisher_policy
from streamer_infra.aws.queues import create_queues
from streamer_infra.aws.secrets import create_secrets
from streamer_infra.aws.tables import create_tables

REQUIRED_OUTPUTS = (
    "apiEndpoint",
    "connectFunctionArn",
    "disconnectFunctionArn",
    "routerFunctionArn",
    "processorFunctionArn",
    "connectionsTableName",
    "subscriptionsTableName",
    "requestsTableName",
)


def stack_function_specs(settings: StackSettings) -> tuple[FunctionSpec, ...]:
    """The application named by `streamer:app` decides the router's action routes. Named
    explicitly even when unset: the deploying shell's STREAMER_APP must not change the routes
    of functions that will run the default application."""
    return function_specs(load_app(settings.app or Settings().app))


def lambda_code(settings: StackSettings) -> pulumi.Archive:
    """The archive `python -m streamer_infra.deploy build` wrote; deploying without one would
    upload nothing useful, so stop with the command that makes it."""
    if not settings.artifact_path.is_file():
        raise FileNotFoundError(
            f"Lambda archive {settings.artifact_path} is missing: run "
            "`hatch run infra:build` (or set streamer:artifactPath)"
        )
    return pulumi.FileArchive(str(settings.artifact_path))


def _processor_timeout(specs: Sequence[FunctionSpec]) -> int:
    consumers = [spec.timeout for spec in specs if spec.trigger == "sqs"]
    if not consumers:
        raise ValueError("route metadata declares no function with an 'sqs' trigger")
    return max(consumers)


def program() -> dict[str, pulumi.Output[Any]]:
    """Create every resource of the stack and export its outputs (also returned, for tests)."""
    settings = load_settings()
    account: Account = current_account()
    specs = stack_function_specs(settings)
    code = lambda_code(settings)
    processor_timeout = _processor_timeout(specs)

    key = create_key(settings, account)
    secrets = create_secrets(settings, key)
    tables = create_tables(settings, key)
    queues = create_queues(settings, key, processor_timeout)
    publisher_policy = create_publisher_policy(settings, queues, key, account)
    api = create_api(settings)

    symbols = SymbolTable()
    for logical, table in tables.items():
        symbols.arns[f"table:{logical}"] = table.arn
    symbols.arns["queue:work"] = queues.work.arn
    symbols.arns["queue:dead_letter"] = queues.dead_letter.arn
    symbols.arns["secret:jwt_public"] = secrets.public.arn
    symbols.arns["api:connections"] = api.connections_arn
    symbols.arns["kms:key"] = key.arn

    environment = base_environment(
        settings,
        {logical: table.name for logical, table in tables.items()},
        queues.work.url,
        secrets.public.arn,
        api.management_endpoint,
        processor_timeout,
    )
    deployed: list[DeployedFunction] = []
    for spec in specs:
        function = create_function(spec, settings, key, symbols.resolve, environment, code)
        if spec.trigger == "sqs":
            create_queue_trigger(settings, function, queues.work.arn)
        deployed.append(function)

    log_groups = create_api_log_groups(settings, key, api.api.id, api.stage_name)
    account_logging = create_account_logging(settings, log_groups)
    wired = wire_api(
        settings,
        api,
        deployed,
        log_groups.access,
        depends_on=[log_groups.execution, *([account_logging] if account_logging else [])],
    )

    topic = create_alarm_topic(settings, key)
    create_alarms(settings, deployed, queues.dead_letter.name, topic)
    dashboard = create_dashboard(settings, account.region, api.api.id, deployed)

    outputs: dict[str, pulumi.Output[Any]] = {
        "apiEndpoint": wired.stage.invoke_url,
        **{f"{d.name}FunctionArn": d.function.arn for d in deployed},
        **{f"{logical}TableName": table.name for logical, table in tables.items()},
        "managementEndpoint": api.management_endpoint,
        "workQueueUrl": queues.work.url,
        "publisherPolicyArn": publisher_policy.arn,
        "deadLetterQueueUrl": queues.dead_letter.url,
        "jwtPublicKeySecretArn": secrets.public.arn,
        "kmsKeyArn": key.arn,
        "dashboardName": dashboard.dashboard_name,
        "environment": pulumi.Output.from_input(settings.environment),
        "stage": pulumi.Output.from_input(settings.stage),
    }
    if secrets.private is not None:
        outputs["jwtPrivateKeySecretArn"] = secrets.private.arn
    if topic is not None:
        outputs["alarmTopicArn"] = topic.arn
    missing = [name for name in REQUIRED_OUTPUTS if name not in outputs]
    if missing:
        raise ValueError(f"route metadata or table specs do not yield outputs {missing}")
    for name, value in outputs.items():
        pulumi.export(name, value)
    return outputs
