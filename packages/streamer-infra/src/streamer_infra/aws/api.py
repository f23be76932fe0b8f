"""The WebSocket API: routes, integrations, authorizer and stage, all wired from route metadata.

No route key is written here: every route comes from a FunctionSpec, so an action added to the
application reaches API Gateway on the next `up` without touching this file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from streamer_infra.aws.config import StackSettings
from streamer_infra.aws.functions import DeployedFunction

ROUTE_SELECTION = "$request.body.action"
CONNECT_ROUTE = "$connect"

# Access log fields: who, which route, what happened. Deliberately nothing from the request
# itself: on `$connect` the query string and headers carry tokens, and API Gateway would write
# them to the log verbatim.
ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "extendedRequestId": "$context.extendedRequestId",
        "connectionId": "$context.connectionId",
        "eventType": "$context.eventType",
        "routeKey": "$context.routeKey",
        "messageId": "$context.messageId",
        "status": "$context.status",
        "requestTimeEpoch": "$context.requestTimeEpoch",
        "sourceIp": "$context.identity.sourceIp",
        "integrationLatency": "$context.integrationLatency",
        "integrationStatus": "$context.integrationStatus",
        "authorizerStatus": "$context.authorizer.status",
        "authorizerError": "$context.authorizer.error",
        "error": "$context.error.message",
        "principal": "$context.authorizer.principalId",
    },
    separators=(",", ":"),
)


@dataclass(frozen=True)
class WebSocketApi:
    """The API and the names functions need before routes exist (management endpoint)."""

    api: aws.apigatewayv2.Api
    stage_name: str

    @property
    def execution_arn(self) -> pulumi.Output[str]:
        return self.api.execution_arn

    @property
    def management_endpoint(self) -> pulumi.Output[str]:
        """https://{api}.execute-api.{region}.{suffix}/{stage}: derived from the API's own
        endpoint, so another partition's DNS suffix needs no code change."""
        return self.api.api_endpoint.apply(
            lambda endpoint: endpoint.replace("wss://", "https://", 1) + "/" + self.stage_name
        )

    @property
    def connections_arn(self) -> pulumi.Output[str]:
        """execute-api:ManageConnections on this API's stage only (POST, GET, DELETE)."""
        return pulumi.Output.concat(
            self.api.execution_arn, "/", self.stage_name, "/*/@connections/*"
        )


@dataclass(frozen=True)
class WiredApi:
    """Everything created by `wire_api`, kept for outputs, alarms and tests."""

    stage: aws.apigatewayv2.Stage
    routes: dict[str, aws.apigatewayv2.Route]
    authorizer: aws.apigatewayv2.Authorizer | None


def create_api(settings: StackSettings) -> WebSocketApi:
    """Created before the functions: their environment needs the management endpoint."""
    api = aws.apigatewayv2.Api(
        "websocket-api",
        name=settings.name("websocket"),
        description=f"Streamer {settings.environment}: WebSocket API",
        protocol_type="WEBSOCKET",
        route_selection_expression=ROUTE_SELECTION,
        tags=settings.tags,
    )
    return WebSocketApi(api=api, stage_name=settings.stage)


def _integration(api: WebSocketApi, deployed: DeployedFunction) -> aws.apigatewayv2.Integration:
    return aws.apigatewayv2.Integration(
        f"{deployed.name}-integration",
        api_id=api.api.id,
        integration_type="AWS_PROXY",
        integration_method="POST",
        integration_uri=deployed.function.invoke_arn,
        description=f"{deployed.name} function",
    )


def _authorizer(
    settings: StackSettings, api: WebSocketApi, deployed: DeployedFunction
) -> aws.apigatewayv2.Authorizer:
    """No identity sources on purpose: API Gateway answers 401 without calling the authorizer
    unless *every* listed source is present, and tokens arrive in one of three places
    (Authorization header, Sec-WebSocket-Protocol header, `token`/`Authorization` query
    parameter). The connect function rejects a request that has none of them itself."""
    authorizer = aws.apigatewayv2.Authorizer(
        "connect-authorizer",
        api_id=api.api.id,
        name=settings.name(f"{deployed.name}-authorizer"),
        authorizer_type="REQUEST",
        authorizer_uri=deployed.function.invoke_arn,
    )
    aws.lambda_.Permission(
        f"{deployed.name}-authorizer-invoke",
        action="lambda:InvokeFunction",
        function=deployed.function.name,
        principal="apigateway.amazonaws.com",
        source_arn=pulumi.Output.concat(api.execution_arn, "/authorizers/", authorizer.id),
    )
    return authorizer


def _create_route(
    api: WebSocketApi,
    deployed: DeployedFunction,
    route_key: str,
    integration: aws.apigatewayv2.Integration,
    authorizer: aws.apigatewayv2.Authorizer | None,
) -> aws.apigatewayv2.Route:
    authorized = route_key == CONNECT_ROUTE and authorizer is not None
    route = aws.apigatewayv2.Route(
        f"route-{route_key}",
        api_id=api.api.id,
        route_key=route_key,
        target=pulumi.Output.concat("integrations/", integration.id),
        authorization_type="CUSTOM" if authorized else "NONE",
        authorizer_id=authorizer.id if authorized and authorizer is not None else None,
        route_response_selection_expression="$default" if deployed.spec.route_response else None,
    )
    if deployed.spec.route_response:
        # The router's return value becomes the reply on the caller's socket: one fewer
        # management API call (and its latency) for every synchronous action.
        aws.apigatewayv2.RouteResponse(
            f"route-response-{route_key}",
            api_id=api.api.id,
            route_id=route.id,
            route_response_key="$default",
        )
    return route


def wire_api(
    settings: StackSettings,
    api: WebSocketApi,
    functions: Sequence[DeployedFunction],
    access_logs: aws.cloudwatch.LogGroup,
    depends_on: Sequence[pulumi.Resource] = (),
) -> WiredApi:
    """Routes, integrations and permissions for every function whose trigger is the API."""
    routes: dict[str, aws.apigatewayv2.Route] = {}
    authorizer = None
    for deployed in functions:
        if deployed.spec.trigger not in ("websocket", "authorizer+websocket"):
            continue
        integration = _integration(api, deployed)
        if deployed.spec.trigger == "authorizer+websocket":
            authorizer = _authorizer(settings, api, deployed)
        for route_key in deployed.spec.route_keys:
            if route_key in routes:
                raise ValueError(f"route {route_key!r} is claimed by two functions")
            routes[route_key] = _create_route(api, deployed, route_key, integration, authorizer)
        aws.lambda_.Permission(
            f"{deployed.name}-api-invoke",
            action="lambda:InvokeFunction",
            function=deployed.function.name,
            principal="apigateway.amazonaws.com",
            source_arn=pulumi.Output.concat(api.execution_arn, "/", api.stage_name, "/*"),
        )
    stage = _stage(settings, api, access_logs, [*routes.values(), *depends_on])
    return WiredApi(stage=stage, routes=routes, authorizer=authorizer)


def _stage(
    settings: StackSettings,
    api: WebSocketApi,
    access_logs: aws.cloudwatch.LogGroup,
    depends_on: Sequence[pulumi.Resource],
) -> aws.apigatewayv2.Stage:
    """Throttling per stage, detailed (per-route) metrics, access logs without request data,
    and execution logs at ERROR with data tracing off: data tracing would log full messages."""
    return aws.apigatewayv2.Stage(
        "stage",
        api_id=api.api.id,
        name=api.stage_name,
        auto_deploy=True,
        description=f"Streamer {settings.environment}",
        default_route_settings=aws.apigatewayv2.StageDefaultRouteSettingsArgs(
            detailed_metrics_enabled=True,
            throttling_rate_limit=settings.throttle_rate_limit,
            throttling_burst_limit=settings.throttle_burst_limit,
            data_trace_enabled=False,
            logging_level="ERROR",
        ),
        access_log_settings=aws.apigatewayv2.StageAccessLogSettingsArgs(
            destination_arn=access_logs.arn, format=ACCESS_LOG_FORMAT
        ),
        tags=settings.tags,
        opts=pulumi.ResourceOptions(depends_on=list(depends_on)),
    )
