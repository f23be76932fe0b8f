"""Stack outputs, and how stack config changes what the program creates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from infra_harness import Deployment, run_program
from streamer_core.storage import TABLES
from streamer_handlers._routes import function_specs
from streamer_infra.aws import REQUIRED_OUTPUTS

DOCUMENTED_OUTPUTS = (
    "apiEndpoint",
    "connectFunctionArn",
    "disconnectFunctionArn",
    "routerFunctionArn",
    "processorFunctionArn",
    "connectionsTableName",
    "subscriptionsTableName",
    "requestsTableName",
)


def test_every_documented_output_is_present(deployment: Deployment) -> None:
    assert set(REQUIRED_OUTPUTS) == set(DOCUMENTED_OUTPUTS)
    outputs = deployment.outputs
    for name in DOCUMENTED_OUTPUTS:
        assert outputs[name], name
    env = deployment.environment
    stage = "prod" if env == "production" else env
    assert outputs["apiEndpoint"] == f"wss://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/{stage}"
    for spec in function_specs():
        assert outputs[f"{spec.name}FunctionArn"].endswith(f"streamer-{spec.name}-{env}")
    for table in TABLES:
        assert outputs[f"{table.logical_name}TableName"] == table.physical_name(env)


def test_alarm_email_creates_an_encrypted_topic_every_alarm_notifies(
    customized: Deployment, deployment: Deployment
) -> None:
    assert not deployment.of_type("aws:sns/topic:Topic")
    topic = customized.one("aws:sns/topic:Topic", "alarm-topic")
    assert topic.inputs["kmsMasterKeyId"] == customized.outputs["kmsKeyArn"]
    subscription = customized.one("aws:sns/topicSubscription:TopicSubscription", "alarm-email")
    assert subscription.inputs["protocol"] == "email"
    assert subscription.inputs["endpoint"] == "oncall@example.com"
    topic_arn = customized.outputs["alarmTopicArn"]
    alarms = customized.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    assert alarms
    for alarm in alarms:
        assert alarm.inputs["alarmActions"] == [topic_arn]
        assert alarm.inputs["okActions"] == [topic_arn]


def test_config_overrides_reach_queue_functions_and_alarms(customized: Deployment) -> None:
    work = customized.one("aws:sqs/queue:Queue", "work-queue")
    assert json.loads(work.inputs["redrivePolicy"])["maxReceiveCount"] == 3
    for function in customized.of_type("aws:lambda/function:Function"):
        assert function.inputs["reservedConcurrentExecutions"] == 20
        assert function.inputs["environment"]["variables"]["STREAMER_MAX_RECEIVE_COUNT"] == "3"
    alarm = customized.one("aws:cloudwatch/metricAlarm:MetricAlarm", "auth-failures")
    assert alarm.inputs["threshold"] == 7
    for group in customized.of_type("aws:cloudwatch/logGroup:LogGroup"):
        assert group.inputs["retentionInDays"] == 14


def test_an_unnamed_environment_takes_its_names_from_config(customized: Deployment) -> None:
    function = customized.one("aws:lambda/function:Function", "connect-function")
    assert function.inputs["name"] == "streamer-connect-feature-x"
    assert customized.outputs["stage"] == "feature-x"
    assert customized.outputs["connectionsTableName"] == "streamer-feature-x-connections"
    for resource in customized.resources:
        tags = resource.inputs.get("tags")
        assert tags is None or tags["environment"] == "feature-x"


def test_without_private_key_only_the_public_secret_exists(customized: Deployment) -> None:
    names = {r.name for r in customized.of_type("aws:secretsmanager/secret:Secret")}
    assert names == {"jwt-public-key"}
    assert "jwtPrivateKeySecretArn" not in customized.outputs


def test_missing_public_key_is_refused(artifact: Path) -> None:
    with pytest.raises(Exception, match="jwtPublicKey"):
        run_program("dev", artifact, {"streamer:jwtPublicKey": None})


def test_missing_archive_names_the_build_command(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="infra:build"):
        run_program("dev", tmp_path / "absent.zip")


def test_invalid_retention_is_refused(artifact: Path) -> None:
    with pytest.raises(ValueError, match="logRetentionDays"):
        run_program("dev", artifact, {"streamer:logRetentionDays": "10"})
