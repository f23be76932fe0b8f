"""Every IAM statement traced back to route metadata or to a documented platform need."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from infra_harness import ACCOUNT_ID, API_ID, REGION, Deployment
from streamer_handlers._routes import FunctionSpec, Grant, function_specs
from streamer_infra.aws.iam import (
    LOG_WRITE_ACTIONS,
    QUEUE_CONSUMER_ACTIONS,
    TRACING_ACTIONS,
    WILDCARD_ACTIONS,
    SymbolTable,
    UnknownResourceError,
    check_wildcards,
)

README = Path(__file__).resolve().parents[2] / "packages" / "streamer-infra" / "README.md"
SPECS = {spec.name: spec for spec in function_specs()}
PLATFORM_STATEMENTS = {"WriteOwnLogs", "ActiveTracing", "ConsumeWorkQueue", "DecryptWorkQueue"}


def expected_arns(env: str, stage: str) -> dict[str, str]:
    """What each symbol must become, written out independently of the program."""
    prefix = f"arn:aws:{{}}:{REGION}:{ACCOUNT_ID}:"
    table = prefix.format("dynamodb") + "table/streamer-{}-{}"
    return {
        "table:connections": table.format(env, "connections"),
        "table:subscriptions": table.format(env, "subscriptions"),
        "table:requests": table.format(env, "requests"),
        "queue:work": prefix.format("sqs") + f"queue/streamer-{env}-work",
        "queue:dead_letter": prefix.format("sqs") + f"queue/streamer-{env}-dead-letter",
        "secret:jwt_public": prefix.format("secretsmanager")
        + f"secret/streamer-{env}-jwt-public-key",
        "api:connections": f"arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:{API_ID}/{stage}"
        "/*/@connections/*",
        "kms:key": prefix.format("kms") + "key/key",
        "*": "*",
    }


def resolve(symbol: str, arns: dict[str, str]) -> str:
    if symbol in arns:
        return arns[symbol]
    base, _, suffix = symbol.partition("/")
    return f"{arns[base]}/{suffix}"


def policy_of(deployment: Deployment, function: str) -> list[dict[str, Any]]:
    policy = deployment.one("aws:iam/rolePolicy:RolePolicy", f"{function}-policy")
    statements: list[dict[str, Any]] = json.loads(policy.inputs["policy"])["Statement"]
    return statements


def test_each_function_has_its_own_role_trusted_by_lambda_only(deployment: Deployment) -> None:
    roles = {r.name: r.inputs for r in deployment.of_type("aws:iam/role:Role")}
    for name in SPECS:
        trust = json.loads(roles[f"{name}-role"]["assumeRolePolicy"])["Statement"]
        assert trust == [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ]
        policy = deployment.one("aws:iam/rolePolicy:RolePolicy", f"{name}-policy")
        assert policy.inputs["role"] == f"{name}-role-id"
    assert len({r["name"] for r in roles.values()}) == len(roles)
    assert not deployment.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")


def test_grant_statements_equal_route_metadata(deployment: Deployment) -> None:
    stage = deployment.outputs["stage"]
    arns = expected_arns(deployment.environment, stage)
    for name, spec in SPECS.items():
        statements = {s["Sid"]: s for s in policy_of(deployment, name)}
        grants = {sid: s for sid, s in statements.items() if sid.startswith("Grant")}
        assert len(grants) == len(spec.grants)
        for index, grant in enumerate(spec.grants):
            statement = grants[f"Grant{index}"]
            assert statement["Effect"] == "Allow"
            assert statement["Action"] == sorted(grant.actions)
            assert statement["Resource"] == [resolve(s, arns) for s in grant.resources]


def test_platform_statements_are_the_documented_ones(deployment: Deployment) -> None:
    for name, spec in SPECS.items():
        statements = {s["Sid"]: s for s in policy_of(deployment, name)}
        extra = {sid for sid in statements if not sid.startswith("Grant")}
        assert extra <= PLATFORM_STATEMENTS
        logs = statements["WriteOwnLogs"]
        assert logs["Action"] == sorted(LOG_WRITE_ACTIONS)
        assert logs["Resource"] == [
            f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:loggroup/"
            f"/aws/lambda/streamer-{name}-{deployment.environment}:*"
        ]
        granted = {a for g in spec.grants for a in g.actions}
        tracing_granted = set(TRACING_ACTIONS) <= granted
        assert ("ActiveTracing" in extra) is not tracing_granted
        if spec.trigger != "sqs":
            assert not extra & {"ConsumeWorkQueue", "DecryptWorkQueue"}


def test_processor_can_consume_the_work_queue(deployment: Deployment) -> None:
    arns = expected_arns(deployment.environment, deployment.outputs["stage"])
    allowed: set[str] = set()
    for statement in policy_of(deployment, "processor"):
        if arns["queue:work"] in statement["Resource"]:
            allowed |= set(statement["Action"])
    assert set(QUEUE_CONSUMER_ACTIONS) <= allowed


def test_wildcard_resources_only_for_documented_actions(deployment: Deployment) -> None:
    readme = README.read_text(encoding="utf-8")
    for name in SPECS:
        for statement in policy_of(deployment, name):
            for resource in statement["Resource"]:
                if resource == "*":
                    assert set(statement["Action"]) <= set(WILDCARD_ACTIONS)
                    for action in statement["Action"]:
                        assert f"`{action}`" in readme, f"{action} missing from the README"
    for role_policy in deployment.of_type("aws:iam/rolePolicy:RolePolicy"):
        for statement in json.loads(role_policy.inputs["policy"])["Statement"]:
            if "*" in statement["Resource"]:
                assert set(statement["Action"]) <= set(WILDCARD_ACTIONS)


def test_api_gateway_logging_role_writes_only_this_stacks_api_logs(deployment: Deployment) -> None:
    policy = deployment.one("aws:iam/rolePolicy:RolePolicy", "api-gateway-logging-policy")
    (statement,) = json.loads(policy.inputs["policy"])["Statement"]
    prefix = f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:loggroup/"
    groups = [
        f"/aws/apigateway/streamer-{deployment.environment}-websocket/access",
        f"API-Gateway-Execution-Logs_{API_ID}/{deployment.outputs['stage']}",
    ]
    expected = [arn for g in groups for arn in (prefix + g, prefix + g + ":*")]
    assert statement["Resource"] == expected
    account = deployment.one("aws:apigateway/account:Account", "api-gateway-account")
    assert account.inputs["cloudwatchRoleArn"].endswith(
        f"streamer-{deployment.environment}-apigateway-logs"
    )


def test_every_wildcard_exception_has_a_reason_in_the_readme() -> None:
    readme = README.read_text(encoding="utf-8")
    section = readme.split("## IAM: where `*` is used")[1].split("\n## ")[0]
    listed = set(re.findall(r"^\| `([a-z0-9-]+:[A-Za-z]+)` \|", section, flags=re.MULTILINE))
    assert listed == set(WILDCARD_ACTIONS)


def test_wildcard_on_an_action_with_resource_permissions_is_refused() -> None:
    with pytest.raises(ValueError, match="dynamodb:GetItem"):
        check_wildcards("router", Grant(("dynamodb:GetItem", "xray:PutTraceSegments"), ("*",)))
    check_wildcards("router", Grant(("xray:PutTraceSegments",), ("*",)))


def test_unknown_resource_symbol_stops_the_deployment() -> None:
    table = SymbolTable({"table:connections": "arn:table"})
    assert table.resolve("*") == "*"
    assert table.resolve("table:connections") == "arn:table"
    with pytest.raises(UnknownResourceError, match="table:sessions"):
        table.resolve("table:sessions")
    with pytest.raises(UnknownResourceError, match="queue:other"):
        table.resolve("queue:other/thing")


def test_spec_with_unknown_resource_fails_the_program(
    monkeypatch: pytest.MonkeyPatch, artifact: Path
) -> None:
    from infra_harness import run_program

    program_module = importlib.import_module("streamer_infra.aws.program")
    rogue = FunctionSpec(
        name="rogue",
        handler="streamer_handlers.functions.router.handler",
        route_keys=("rogue",),
        timeout=10,
        grants=(Grant(("dynamodb:GetItem",), ("table:everything",)),),
    )
    specs = (*function_specs(), rogue)
    monkeypatch.setattr(program_module, "stack_function_specs", lambda settings: specs)
    with pytest.raises(Exception, match="table:everything"):
        run_program("dev", artifact)
