"""CloudWatch alarms the deployment document asks for, with per-stack thresholds.

Custom metrics come from the handlers' EMF lines (namespace `Streamer`, dimension `service`);
Lambda and SQS metrics from AWS. Missing data is "not breaching": a quiet stack is healthy.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence

import pulumi
import pulumi_aws as aws

from streamer_infra.aws.config import METRICS_NAMESPACE, StackSettings
from streamer_infra.aws.functions import DeployedFunction
from streamer_infra.aws.kms import StackKey

PERIOD_SECONDS = 300


def create_alarm_topic(settings: StackSettings, key: StackKey) -> aws.sns.Topic | None:
    """Only with `alarmEmail` set: a topic nobody subscribes to would only suggest coverage.
    The subscription stays pending until the recipient confirms the email."""
    if settings.alarm_email is None:
        return None
    topic = aws.sns.Topic(
        "alarm-topic",
        name=settings.name("alarms"),
        kms_master_key_id=key.arn,
        tags=settings.tags,
    )
    aws.sns.TopicSubscription(
        "alarm-email", topic=topic.arn, protocol="email", endpoint=settings.alarm_email
    )
    return topic


def _alarm(
    settings: StackSettings,
    resource_name: str,
    description: str,
    *,
    namespace: str,
    metric: str,
    dimensions: Mapping[str, pulumi.Input[str]],
    threshold: float,
    actions: Sequence[pulumi.Input[str]],
    statistic: str | None = "Sum",
    extended_statistic: str | None = None,
    evaluation_periods: int = 1,
    comparison: str = "GreaterThanThreshold",
) -> aws.cloudwatch.MetricAlarm:
    return aws.cloudwatch.MetricAlarm(
        resource_name,
        name=settings.name(resource_name),
        alarm_description=description,
        namespace=namespace,
        metric_name=metric,
        dimensions=dict(dimensions),
        statistic=statistic if extended_statistic is None else None,
        extended_statistic=extended_statistic,
        period=PERIOD_SECONDS,
        evaluation_periods=evaluation_periods,
        threshold=threshold,
        comparison_operator=comparison,
        treat_missing_data="notBreaching",
        alarm_actions=list(actions),
        ok_actions=list(actions),
        tags=settings.tags,
    )


def create_alarms(
    settings: StackSettings,
    functions: Sequence[DeployedFunction],
    dead_letter_queue_name: pulumi.Input[str],
    topic: aws.sns.Topic | None,
) -> list[aws.cloudwatch.MetricAlarm]:
    """Every alarm notifies the topic when there is one; otherwise the alarms still show state
    in the console and on the dashboard."""
    thresholds = settings.alarms
    alarm = functools.partial(_alarm, settings, actions=[topic.arn] if topic is not None else [])
    custom = functools.partial(
        alarm, namespace=METRICS_NAMESPACE, dimensions=settings.metric_dimensions
    )
    alarms = [
        custom(
            "auth-failures",
            "Many refused connections: leaked or expired tokens, or someone guessing.",
            metric="AuthFailures",
            threshold=thresholds.auth_failures,
        ),
        custom(
            "message-failures",
            "Messages answered with an error (validation, handler failures, rejected work).",
            metric="MessageFailures",
            threshold=thresholds.message_failures,
        ),
        custom(
            "processing-latency",
            "p99 time to run queued work is high for 15 minutes.",
            metric="ProcessingLatency",
            threshold=thresholds.processing_latency_p99_ms,
            statistic=None,
            extended_statistic="p99",
            evaluation_periods=3,
        ),
        alarm(
            "dead-letter-messages",
            "Work ended in the dead-letter queue: a request failed every attempt.",
            namespace="AWS/SQS",
            metric="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": dead_letter_queue_name},
            threshold=thresholds.dead_letter_messages,
            statistic="Maximum",
            comparison="GreaterThanOrEqualToThreshold",
        ),
    ]
    concurrency_threshold = math.ceil(settings.reserved_concurrency * thresholds.concurrency_ratio)
    for deployed in functions:
        name = deployed.name
        lambda_alarm = functools.partial(
            alarm, namespace="AWS/Lambda", dimensions={"FunctionName": deployed.function.name}
        )
        alarms += [
            lambda_alarm(
                f"{name}-errors",
                f"The {name} function is failing invocations.",
                metric="Errors",
                threshold=thresholds.lambda_errors,
            ),
            lambda_alarm(
                f"{name}-throttles",
                f"The {name} function hit its reserved concurrency.",
                metric="Throttles",
                threshold=thresholds.lambda_throttles,
                comparison="GreaterThanOrEqualToThreshold",
            ),
            lambda_alarm(
                f"{name}-concurrency",
                f"The {name} function is near its reserved concurrency "
                f"({settings.reserved_concurrency}).",
                metric="ConcurrentExecutions",
                threshold=concurrency_threshold,
                statistic="Maximum",
                comparison="GreaterThanOrEqualToThreshold",
            ),
        ]
    return alarms
