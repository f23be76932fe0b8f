"""CloudWatch alarms the deployment document asks for, with per-stack thresholds.

Custom metrics come from the handlers' EMF lines (namespace `Streamer`, dimension `service`);
Lambda and SQS metrics from AWS. Missing data is "not breaching": a quiet stack is healthy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pulumi
import pulumi_aws as aws

from .config import METRICS_NAMESPACE, StackSettings
from .functions import DeployedFunction
from .kms import StackKey

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
    actions: list[pulumi.Input[str]] = [topic.arn] if topic is not None else []
    service = settings.metric_dimensions
    alarms = [
        _alarm(
            settings,
            "auth-failures",
            "Many refused connections: leaked or expired tokens, or someone guessing.",
            namespace=METRICS_NAMESPACE,
            metric="AuthFailures",
            dimensions=service,
            threshold=thresholds.auth_failures,
            actions=actions,
        ),
        _alarm(
            settings,
            "message-failures",
            "Messages answered with an error (validation, handler failures, rejected work).",
            namespace=METRICS_NAMESPACE,
            metric="MessageFailures",
            dimensions=service,
            threshold=thresholds.message_failures,
            actions=actions,
        ),
        _alarm(
            settings,
            "processing-latency",
            "p99 time to run queued work is high for 15 minutes.",
            namespace=METRICS_NAMESPACE,
            metric="ProcessingLatency",
            dimensions=service,
            threshold=thresholds.processing_latency_p99_ms,
            actions=actions,
            statistic=None,
            extended_statistic="p99",
            evaluation_periods=3,
        ),
        _alarm(
            settings,
            "dead-letter-messages",
            "Work ended in the dead-letter queue: a request failed every attempt.",
            namespace="AWS/SQS",
            metric="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": dead_letter_queue_name},
            threshold=thresholds.dead_letter_messages,
            actions=actions,
            statistic="Maximum",
            comparison="GreaterThanOrEqualToThreshold",
        ),
    ]
    concurrency_threshold = math.ceil(settings.reserved_concurrency * thresholds.concurrency_ratio)
    for deployed in functions:
        by_function = {"FunctionName": deployed.function.name}
        alarms += [
            _alarm(
                settings,
                f"{deployed.name}-errors",
                f"The {deployed.name} function is failing invocations.",
                namespace="AWS/Lambda",
                metric="Errors",
                dimensions=by_function,
                threshold=thresholds.lambda_errors,
                actions=actions,
            ),
            _alarm(
                settings,
                f"{deployed.name}-throttles",
                f"The {deployed.name} function hit its reserved concurrency.",
                namespace="AWS/Lambda",
                metric="Throttles",
                dimensions=by_function,
                threshold=thresholds.lambda_throttles,
                actions=actions,
                comparison="GreaterThanOrEqualToThreshold",
            ),
            _alarm(
                settings,
                f"{deployed.name}-concurrency",
                f"The {deployed.name} function is near its reserved concurrency "
                f"({settings.reserved_concurrency}).",
                namespace="AWS/Lambda",
                metric="ConcurrentExecutions",
                dimensions=by_function,
                threshold=concurrency_threshold,
                actions=actions,
                statistic="Maximum",
                comparison="GreaterThanOrEqualToThreshold",
            ),
        ]
    return alarms
