"""One CloudWatch dashboard per stack: connections, throughput, error rates, latency percentiles."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_aws as aws

from streamer_infra.aws.config import METRICS_NAMESPACE, StackSettings
from streamer_infra.aws.functions import DeployedFunction

WIDTH = 12
HEIGHT = 6


def _widget(title: str, region: str, metrics: list[list[Any]], x: int, y: int) -> dict[str, Any]:
    return {
        "type": "metric",
        "x": x,
        "y": y,
        "width": WIDTH,
        "height": HEIGHT,
        "properties": {
            "title": title,
            "region": region,
            "view": "timeSeries",
            "stacked": False,
            "period": 60,
            "metrics": metrics,
        },
    }


def dashboard_body(
    settings: StackSettings,
    region: str,
    api_id: pulumi.Input[str],
    functions: Sequence[DeployedFunction],
) -> pulumi.Output[str]:
    """Custom metrics first (what users experience), then AWS's view of the same path."""
    service = [part for pair in settings.metric_dimensions.items() for part in pair]
    api = ["ApiId", api_id, "Stage", settings.stage]

    def custom(metric: str, stat: str = "Sum") -> list[Any]:
        return [METRICS_NAMESPACE, metric, *service, {"stat": stat}]

    def gateway(metric: str, stat: str = "Sum") -> list[Any]:
        return ["AWS/ApiGateway", metric, *api, {"stat": stat}]

    def per_function(metric: str, stat: str) -> list[list[Any]]:
        return [
            ["AWS/Lambda", metric, "FunctionName", f.function.name, {"stat": stat, "label": f.name}]
            for f in functions
        ]

    widgets = [
        _widget(
            "Connections",
            region,
            [custom("ConnectionsOpened"), custom("ConnectionsClosed"), gateway("ConnectCount")],
            0,
            0,
        ),
        _widget(
            "Message throughput",
            region,
            [custom("MessagesRouted"), custom("ProgressDelivered"), gateway("MessageCount")],
            WIDTH,
            0,
        ),
        _widget(
            "Error rates",
            region,
            [
                custom("AuthFailures"),
                custom("MessageFailures"),
                custom("RateLimited"),
                gateway("ClientError"),
                gateway("ExecutionError"),
                *per_function("Errors", "Sum"),
                *per_function("Throttles", "Sum"),
            ],
            0,
            HEIGHT,
        ),
        _widget(
            "Latency percentiles (ms)",
            region,
            [
                custom("ProcessingLatency", "p50"),
                custom("ProcessingLatency", "p90"),
                custom("ProcessingLatency", "p99"),
                gateway("IntegrationLatency", "p50"),
                gateway("IntegrationLatency", "p99"),
                *per_function("Duration", "p99"),
            ],
            WIDTH,
            HEIGHT,
        ),
    ]
    return pulumi.Output.json_dumps({"widgets": widgets})


def create_dashboard(
    settings: StackSettings,
    region: str,
    api_id: pulumi.Input[str],
    functions: Sequence[DeployedFunction],
) -> aws.cloudwatch.Dashboard:
    """Dashboards carry no tags in CloudWatch; the name says which stack it belongs to."""
    return aws.cloudwatch.Dashboard(
        "dashboard",
        dashboard_name=settings.name("overview"),
        dashboard_body=dashboard_body(settings, region, api_id, functions),
    )
