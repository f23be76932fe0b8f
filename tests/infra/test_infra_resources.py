"""Every resource the deployment document and issue 6 ask for, with its settings, per stack."""

from __future__ import annotations

import inspect
import json

import pulumi_aws
import pytest
from infra_harness import ENVIRONMENTS, PUBLIC_KEY, Deployment
from streamer_core.storage import TABLES
from streamer_handlers._routes import function_specs, metric_dimensions

EXPECTED = {
    "dev": {"concurrency": 10, "retention": 7, "log_level": "DEBUG", "stage": "dev"},
    "staging": {"concurrency": 50, "retention": 30, "log_level": "INFO", "stage": "staging"},
    "production": {"concurrency": 100, "retention": 90, "log_level": "INFO", "stage": "prod"},
}
SPECS = {spec.name: spec for spec in function_specs()}
FUNCTION = "aws:lambda/function:Function"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
QUEUE = "aws:sqs/queue:Queue"
TABLE = "aws:dynamodb/table:Table"
SECRET = "aws:secretsmanager/secret:Secret"
SECRET_SIG = "4dabf18193072939515e22adb298388d"
SECRET_MARK = "1b47061264138c4ac30d75fd1eb44270"


def _accepts_tags(token: str) -> bool:
    module_name, _, class_name = token.removeprefix("aws:").partition(":")
    package = module_name.split("/")[0]
    module = getattr(pulumi_aws, package, None) or getattr(pulumi_aws, f"{package}_")
    cls = getattr(module, class_name)
    return "tags" in inspect.signature(cls._internal_init).parameters


def test_every_taggable_resource_carries_environment_and_service(deployment: Deployment) -> None:
    taggable = [r for r in deployment.resources if _accepts_tags(r.type)]
    assert len(taggable) > 20
    for resource in taggable:
        assert resource.inputs.get("tags") == {
            "environment": deployment.environment,
            "service": "streamer",
        }, f"{resource.type} {resource.name} is not tagged"


def test_kms_key_rotates_has_alias_and_lets_cloudwatch_logs_use_it(deployment: Deployment) -> None:
    key = deployment.one("aws:kms/key:Key", "key")
    assert key.inputs["enableKeyRotation"] is True
    alias = deployment.one("aws:kms/alias:Alias", "key-alias")
    assert alias.inputs["name"] == f"alias/streamer-{deployment.environment}-data"
    assert alias.inputs["targetKeyId"] == "key-id"
    statements = {s["Sid"]: s for s in json.loads(key.inputs["policy"])["Statement"]}
    logs = statements["CloudWatchLogsEncryption"]
    assert logs["Principal"] == {"Service": "logs.us-east-1.amazonaws.com"}
    assert "kms:GenerateDataKey*" in logs["Action"]
    assert logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"] == (
        "arn:aws:logs:us-east-1:123456789012:log-group:*"
    )
    assert statements["AccountAdministration"]["Principal"] == {
        "AWS": "arn:aws:iam::123456789012:root"
    }


def test_secrets_are_encrypted_with_the_stack_key_and_hold_the_configured_keys(
    deployment: Deployment,
) -> None:
    from infra_harness import PRIVATE_KEY, PUBLIC_KEY

    key_arn = deployment.outputs["kmsKeyArn"]
    secrets = {r.name: r for r in deployment.of_type(SECRET)}
    assert set(secrets) == {"jwt-public-key", "jwt-private-key"}
    for secret in secrets.values():
        assert secret.inputs["kmsKeyId"] == key_arn
    versions = {
        r.name: r.inputs["secretString"]
        for r in deployment.of_type("aws:secretsmanager/secretVersion:SecretVersion")
    }
    # Pulumi's wire form of a secret: the value travels marked secret, so it is encrypted in
    # the stack state and masked in the CLI's output.
    assert versions == {
        "jwt-public-key-value": {SECRET_SIG: SECRET_MARK, "value": PUBLIC_KEY},
        "jwt-private-key-value": {SECRET_SIG: SECRET_MARK, "value": PRIVATE_KEY},
    }


@pytest.mark.parametrize("spec", TABLES, ids=lambda s: s.logical_name)
def test_tables_follow_core_specs(deployment: Deployment, spec: object) -> None:
    from streamer_core.storage import TableSpec

    assert isinstance(spec, TableSpec)
    table = deployment.one(TABLE, f"table-{spec.logical_name}")
    inputs = table.inputs
    assert inputs["name"] == spec.physical_name(deployment.environment)
    assert inputs["billingMode"] == "PAY_PER_REQUEST"
    assert inputs["hashKey"] == spec.partition_key.name
    assert inputs.get("rangeKey") == (spec.sort_key.name if spec.sort_key else None)
    assert {(a["name"], a["type"]) for a in inputs["attributes"]} == {
        (a.name, a.type) for a in spec.attribute_definitions()
    }
    assert inputs["serverSideEncryption"] == {
        "enabled": True,
        "kmsKeyArn": deployment.outputs["kmsKeyArn"],
    }
    assert inputs["pointInTimeRecovery"] == {"enabled": True}
    assert inputs["ttl"] == {"attributeName": spec.ttl_attribute, "enabled": True}
    indexes = {i["name"]: i for i in inputs.get("globalSecondaryIndexes", [])}
    assert set(indexes) == {index.name for index in spec.indexes}
    for index in spec.indexes:
        declared = indexes[index.name]
        assert not {"hashKey", "rangeKey"} & set(declared)
        expected = [{"attributeName": index.partition_key.name, "keyType": "HASH"}]
        if index.sort_key is not None:
            expected.append({"attributeName": index.sort_key.name, "keyType": "RANGE"})
        assert declared["keySchemas"] == expected
        assert declared["projectionType"] == index.projection
    assert inputs["deletionProtectionEnabled"] is (deployment.environment == "production")


def test_queue_and_dead_letter_queue_are_encrypted_and_redrive(deployment: Deployment) -> None:
    queues = {r.name: r.inputs for r in deployment.of_type(QUEUE)}
    assert set(queues) == {"work-queue", "dead-letter-queue"}
    for queue in queues.values():
        assert queue["kmsMasterKeyId"] == deployment.outputs["kmsKeyArn"]
    work = queues["work-queue"]
    redrive = json.loads(work["redrivePolicy"])
    assert redrive["maxReceiveCount"] == 5
    assert redrive["deadLetterTargetArn"].endswith(f"streamer-{deployment.environment}-dead-letter")
    assert work["visibilityTimeoutSeconds"] >= 6 * SPECS["processor"].timeout
    allow = deployment.one(
        "aws:sqs/redriveAllowPolicy:RedriveAllowPolicy", "dead-letter-redrive-allow"
    )
    assert json.loads(allow.inputs["redriveAllowPolicy"])["sourceQueueArns"] == [
        f"arn:aws:sqs:us-east-1:123456789012:queue/streamer-{deployment.environment}-work"
    ]


def test_every_log_group_is_encrypted_with_the_environment_retention(
    deployment: Deployment,
) -> None:
    groups = {r.inputs["name"]: r.inputs for r in deployment.of_type(LOG_GROUP)}
    env = deployment.environment
    expected_names = {f"/aws/lambda/streamer-{name}-{env}" for name in SPECS}
    assert expected_names <= set(groups)
    assert len(groups) == len(SPECS) + 2
    for group in groups.values():
        assert group["retentionInDays"] == EXPECTED[env]["retention"]
        assert group["kmsKeyId"] == deployment.outputs["kmsKeyArn"]


def test_functions_match_metadata_and_environment(deployment: Deployment) -> None:
    env = deployment.environment
    functions = {r.name.removesuffix("-function"): r.inputs for r in deployment.of_type(FUNCTION)}
    assert set(functions) == set(SPECS)
    for name, inputs in functions.items():
        spec = SPECS[name]
        assert inputs["name"] == f"streamer-{name}-{env}"
        assert inputs["handler"] == spec.handler
        assert inputs["runtime"] in {"python3.12", "python3.13"}
        assert inputs["architectures"] == ["arm64"]
        assert inputs["memorySize"] == 3008
        assert inputs["timeout"] == spec.timeout
        assert inputs["reservedConcurrentExecutions"] == EXPECTED[env]["concurrency"]
        assert inputs["tracingConfig"] == {"mode": "Active"}
        assert inputs["kmsKeyArn"] == deployment.outputs["kmsKeyArn"]
        assert inputs["loggingConfig"]["logGroup"] == f"/aws/lambda/streamer-{name}-{env}"
        assert inputs["role"].endswith(f"streamer-{env}-{name}-function")


def test_function_environment_points_at_this_stacks_resources(deployment: Deployment) -> None:
    env = deployment.environment
    outputs = deployment.outputs
    for function in deployment.of_type(FUNCTION):
        variables = function.inputs["environment"]["variables"]
        assert variables["STREAMER_ENV"] == env
        assert variables["STREAMER_CONNECTIONS_TABLE"] == outputs["connectionsTableName"]
        assert variables["STREAMER_SUBSCRIPTIONS_TABLE"] == outputs["subscriptionsTableName"]
        assert variables["STREAMER_REQUESTS_TABLE"] == outputs["requestsTableName"]
        assert variables["STREAMER_QUEUE_URL"] == outputs["workQueueUrl"]
        assert variables["STREAMER_JWT_PUBLIC_KEY_SECRET"] == outputs["jwtPublicKeySecretArn"]
        assert variables["STREAMER_MANAGEMENT_ENDPOINT"] == (
            f"https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/{EXPECTED[env]['stage']}"
        )
        assert variables["STREAMER_MAX_RECEIVE_COUNT"] == "5"
        assert variables["STREAMER_PROCESSOR_TIMEOUT"] == str(SPECS["processor"].timeout)
        assert variables["POWERTOOLS_LOG_LEVEL"] == EXPECTED[env]["log_level"]
        assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "Streamer"
        assert variables["POWERTOOLS_SERVICE_NAME"] == f"streamer-{env}"
        assert not any("PRIVATE" in name for name in variables)


def test_functions_get_the_public_key_inline_and_keep_the_secret(deployment: Deployment) -> None:
    # Inline so a cold $connect needs no Secrets Manager client or round trip; the secret's
    # ARN stays for deployments that turn the inline key off.
    for function in deployment.of_type(FUNCTION):
        variables = function.inputs["environment"]["variables"]
        assert variables["STREAMER_JWT_PUBLIC_KEY"] == PUBLIC_KEY
        assert (
            variables["STREAMER_JWT_PUBLIC_KEY_SECRET"]
            == deployment.outputs["jwtPublicKeySecretArn"]
        )


def test_the_inline_public_key_can_be_turned_off(customized: Deployment) -> None:
    for function in customized.of_type(FUNCTION):
        variables = function.inputs["environment"]["variables"]
        assert "STREAMER_JWT_PUBLIC_KEY" not in variables
        assert (
            variables["STREAMER_JWT_PUBLIC_KEY_SECRET"]
            == customized.outputs["jwtPublicKeySecretArn"]
        )


def test_processor_is_fed_by_the_work_queue_with_partial_batch_responses(
    deployment: Deployment,
) -> None:
    mappings = deployment.of_type("aws:lambda/eventSourceMapping:EventSourceMapping")
    assert [m.name for m in mappings] == ["processor-queue-trigger"]
    inputs = mappings[0].inputs
    assert inputs["functionResponseTypes"] == ["ReportBatchItemFailures"]
    assert inputs["eventSourceArn"].endswith(f"streamer-{deployment.environment}-work")
    assert inputs["functionName"] == deployment.outputs["processorFunctionArn"]
    reserved = EXPECTED[deployment.environment]["concurrency"]
    assert inputs["scalingConfig"]["maximumConcurrency"] <= reserved


def test_alarms_cover_the_documented_signals(deployment: Deployment) -> None:
    alarms = {
        r.name: r.inputs for r in deployment.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    }
    # Exactly what the functions emit: CloudWatch matches on the whole dimension set.
    service = {"service": "streamer", "environment": deployment.environment}
    assert service == metric_dimensions(deployment.environment)
    for name, metric in [
        ("auth-failures", "AuthFailures"),
        ("message-failures", "MessageFailures"),
        ("processing-latency", "ProcessingLatency"),
    ]:
        assert alarms[name]["namespace"] == "Streamer"
        assert alarms[name]["metricName"] == metric
        assert alarms[name]["dimensions"] == service
    assert alarms["processing-latency"]["extendedStatistic"] == "p99"
    dead_letter = alarms["dead-letter-messages"]
    assert dead_letter["namespace"] == "AWS/SQS"
    assert dead_letter["dimensions"] == {
        "QueueName": f"streamer-{deployment.environment}-dead-letter"
    }
    assert dead_letter["threshold"] == 1
    reserved = EXPECTED[deployment.environment]["concurrency"]
    for name in SPECS:
        function_name = f"streamer-{name}-{deployment.environment}"
        for kind, metric in [("errors", "Errors"), ("throttles", "Throttles")]:
            alarm = alarms[f"{name}-{kind}"]
            assert (alarm["namespace"], alarm["metricName"]) == ("AWS/Lambda", metric)
            assert alarm["dimensions"] == {"FunctionName": function_name}
        concurrency = alarms[f"{name}-concurrency"]
        assert concurrency["metricName"] == "ConcurrentExecutions"
        assert 0 < concurrency["threshold"] <= reserved
    assert len(alarms) == 4 + 3 * len(SPECS)
    for alarm in alarms.values():
        assert alarm["treatMissingData"] == "notBreaching"
        assert alarm.get("alarmActions", []) == []


def test_dashboard_shows_connections_throughput_errors_and_latency(deployment: Deployment) -> None:
    dashboard = deployment.one("aws:cloudwatch/dashboard:Dashboard", "dashboard")
    widgets = json.loads(dashboard.inputs["dashboardBody"])["widgets"]
    titles = [w["properties"]["title"] for w in widgets]
    assert titles == [
        "Connections",
        "Message throughput",
        "Error rates",
        "Latency percentiles (ms)",
    ]
    latency = widgets[3]["properties"]["metrics"]
    assert {m[-1]["stat"] for m in latency} >= {"p50", "p90", "p99"}
    for widget in widgets:
        assert widget["properties"]["region"] == "us-east-1"


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_stack_file_values_match_the_deployment_document(environment: str) -> None:
    from infra_harness import stack_config

    config = stack_config(environment)
    assert config["streamer:reservedConcurrency"] == EXPECTED[environment]["concurrency"]
    assert config["streamer:logRetentionDays"] == EXPECTED[environment]["retention"]
    # The redrive count is the handlers' own default, declared once in `Settings`.
    assert "streamer:maxReceiveCount" not in config
