"""The WebSocket API wired from route metadata: routes, authorizer, replies, stage, permissions."""

from __future__ import annotations

import importlib
import json
from types import SimpleNamespace
from typing import Any, cast

import pytest
from infra_harness import ACCOUNT_ID, API_ID, REGION, Deployment
from streamer_handlers._lambda.settings import DEFAULT_APP
from streamer_handlers.deployment import function_specs, load_app

SPECS = {spec.name: spec for spec in function_specs()}
ROUTE = "aws:apigatewayv2/route:Route"
EXECUTION_ARN = f"arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:{API_ID}"


def routes_of(deployment: Deployment) -> dict[str, dict[str, object]]:
    return {r.inputs["routeKey"]: dict(r.inputs) for r in deployment.of_type(ROUTE)}


def test_api_selects_routes_on_the_action_field(deployment: Deployment) -> None:
    api = deployment.one("aws:apigatewayv2/api:Api", "websocket-api")
    assert api.inputs["protocolType"] == "WEBSOCKET"
    assert api.inputs["routeSelectionExpression"] == "$request.body.action"


def test_routes_equal_the_handlers_metadata(deployment: Deployment) -> None:
    expected = {
        key: spec.name
        for spec in SPECS.values()
        if spec.trigger != "sqs"
        for key in spec.route_keys
    }
    routes = routes_of(deployment)
    assert set(routes) == set(expected)
    for key, function in expected.items():
        assert routes[key]["target"] == f"integrations/{function}-integration-id"
    integrations = {
        r.name: r.inputs for r in deployment.of_type("aws:apigatewayv2/integration:Integration")
    }
    assert set(integrations) == {f"{name}-integration" for name in set(expected.values())}
    for name, integration in integrations.items():
        function = name.removesuffix("-integration")
        assert integration["integrationType"] == "AWS_PROXY"
        assert integration["integrationUri"].endswith(
            f"streamer-{function}-{deployment.environment}/invocations"
        )


def test_connect_is_authorized_by_the_connect_function(deployment: Deployment) -> None:
    authorizer = deployment.one("aws:apigatewayv2/authorizer:Authorizer", "connect-authorizer")
    assert authorizer.inputs["authorizerType"] == "REQUEST"
    assert authorizer.inputs["authorizerUri"].endswith(
        f"streamer-connect-{deployment.environment}/invocations"
    )
    # Header, subprotocol and query-string tokens must all reach the function.
    assert not authorizer.inputs.get("identitySources")
    routes = routes_of(deployment)
    assert routes["$connect"]["authorizationType"] == "CUSTOM"
    assert routes["$connect"]["authorizerId"] == "connect-authorizer-id"
    for key, route in routes.items():
        if key != "$connect":
            assert route["authorizationType"] == "NONE"


def test_router_routes_answer_through_route_responses(deployment: Deployment) -> None:
    responses = {
        r.name.removeprefix("route-response-"): r.inputs
        for r in deployment.of_type("aws:apigatewayv2/routeResponse:RouteResponse")
    }
    with_response = {k for s in SPECS.values() if s.route_response for k in s.route_keys}
    assert set(responses) == with_response
    routes = routes_of(deployment)
    for key in with_response:
        assert routes[key]["routeResponseSelectionExpression"] == "$default"
        assert responses[key]["routeResponseKey"] == "$default"
        assert responses[key]["routeId"] == f"route-{key}-id"
    for key in set(routes) - with_response:
        assert "routeResponseSelectionExpression" not in routes[key]


def test_stage_throttles_records_metrics_and_keeps_tokens_out_of_logs(
    deployment: Deployment,
) -> None:
    stage = deployment.one("aws:apigatewayv2/stage:Stage", "stage").inputs
    expected_stage = "prod" if deployment.environment == "production" else deployment.environment
    assert stage["name"] == expected_stage
    assert deployment.outputs["stage"] == expected_stage
    assert stage["autoDeploy"] is True
    settings = stage["defaultRouteSettings"]
    assert settings["detailedMetricsEnabled"] is True
    assert settings["dataTraceEnabled"] is False
    assert settings["throttlingRateLimit"] > 0
    assert settings["throttlingBurstLimit"] >= settings["throttlingRateLimit"]
    log_format = stage["accessLogSettings"]["format"]
    fields = json.loads(log_format)
    assert {"requestId", "connectionId", "routeKey", "status", "eventType"} <= set(fields)
    lowered = log_format.lower()
    for forbidden in ("querystring", "query", "header", "$request", "authorization", "token"):
        assert forbidden not in lowered
    assert stage["accessLogSettings"]["destinationArn"].endswith(
        f"/aws/apigateway/streamer-{deployment.environment}-websocket/access"
    )


def test_invoke_permissions_are_scoped_to_this_api(deployment: Deployment) -> None:
    permissions = {r.name: r.inputs for r in deployment.of_type("aws:lambda/permission:Permission")}
    stage = deployment.outputs["stage"]
    api_functions = {s.name for s in SPECS.values() if s.trigger != "sqs"}
    assert set(permissions) == {f"{n}-api-invoke" for n in api_functions} | {
        "connect-authorizer-invoke"
    }
    for name, permission in permissions.items():
        assert permission["principal"] == "apigateway.amazonaws.com"
        assert permission["action"] == "lambda:InvokeFunction"
        function = name.split("-")[0]
        assert permission["function"] == f"streamer-{function}-{deployment.environment}"
        if name == "connect-authorizer-invoke":
            assert permission["sourceArn"] == f"{EXECUTION_ARN}/authorizers/connect-authorizer-id"
        else:
            assert permission["sourceArn"] == f"{EXECUTION_ARN}/{stage}/*"


def test_an_application_action_becomes_a_route_without_touching_infra(
    customized: Deployment,
) -> None:
    routes = routes_of(customized)
    assert "thumbnail" in routes
    assert "generate_report" not in routes
    assert routes["thumbnail"]["target"] == "integrations/router-integration-id"
    for function in customized.of_type("aws:lambda/function:Function"):
        assert function.inputs["environment"]["variables"]["STREAMER_APP"] == "infra_custom_app:app"


def test_the_deploying_shells_streamer_app_does_not_change_the_routes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from streamer_handlers.deployment import reset_settings

    program_module = importlib.import_module("streamer_infra.aws.program")
    monkeypatch.setenv("STREAMER_APP", "module_that_does_not_exist:app")
    reset_settings()
    try:
        settings = cast(Any, SimpleNamespace(app=None))
        specs = program_module.stack_function_specs(settings)
    finally:
        monkeypatch.delenv("STREAMER_APP")
        reset_settings()
    assert specs == function_specs(load_app(DEFAULT_APP))
