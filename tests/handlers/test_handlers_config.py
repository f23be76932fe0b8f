"""Settings, the application registry, route metadata, the demo app and observability."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from streamer_core import BUILTIN_ACTIONS
from streamer_handlers import Streamer
from streamer_handlers.demo import app as demo_app
from streamer_handlers.deployment import (
    FunctionSpec,
    Grant,
    Settings,
    SettingsError,
    function_specs,
    get_settings,
    load_app,
    reset_settings,
)


def test_settings_defaults_follow_the_contract():
    settings = Settings.from_env({})
    assert settings.env == "dev"
    assert settings.app == "streamer_handlers.demo:app"
    assert settings.rate_limit == 100
    assert settings.progress_per_second == 10
    assert settings.sync_timeout == 25
    assert settings.max_receive_count == 5
    assert settings.processor_timeout == 900
    assert settings.demo_delay == 0.5
    assert settings.allowed_tenants is None
    assert settings.management_endpoint is None
    assert settings.max_subscriptions == 100


def test_settings_read_every_variable():
    settings = Settings.from_env(
        {
            "STREAMER_ENV": "prod",
            "STREAMER_CONNECTIONS_TABLE": "c",
            "STREAMER_SUBSCRIPTIONS_TABLE": "s",
            "STREAMER_REQUESTS_TABLE": "r",
            "STREAMER_QUEUE_URL": "https://sqs/q",
            "STREAMER_MANAGEMENT_ENDPOINT": "https://api.example.com/prod/",
            "STREAMER_JWT_PUBLIC_KEY_SECRET": "secret-id",
            "STREAMER_JWT_ISSUER": "iss",
            "STREAMER_JWT_AUDIENCE": "aud",
            "STREAMER_ALLOWED_TENANTS": " acme, globex ,",
            "STREAMER_APP": "pkg.mod:app",
            "STREAMER_RATE_LIMIT": "7",
            "STREAMER_PROGRESS_PER_SECOND": "2.5",
            "STREAMER_SYNC_TIMEOUT": "10",
            "STREAMER_MAX_RECEIVE_COUNT": "3",
            "STREAMER_PROCESSOR_TIMEOUT": "60",
            "STREAMER_DEMO_DELAY": "0",
            "STREAMER_JWT_PUBLIC_KEY_FILE": "/etc/streamer/jwt.pem",
            "STREAMER_MAX_SUBSCRIPTIONS": "20",
        }
    )
    assert settings.jwt_public_key_file == "/etc/streamer/jwt.pem"
    assert settings.max_subscriptions == 20
    assert settings.management_endpoint == "https://api.example.com/prod"
    assert settings.allowed_tenants == {"acme", "globex"}
    assert (settings.rate_limit, settings.max_receive_count, settings.processor_timeout) == (
        7,
        3,
        60,
    )
    assert settings.progress_per_second == 2.5
    assert settings.demo_delay == 0
    assert (settings.connections_table, settings.requests_table) == ("c", "r")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STREAMER_SYNC_TIMEOUT", "29"),
        ("STREAMER_SYNC_TIMEOUT", "abc"),
        ("STREAMER_RATE_LIMIT", "0"),
        ("STREAMER_RATE_LIMIT", "1.5"),
        ("STREAMER_PROGRESS_PER_SECOND", "nan"),
        ("STREAMER_MAX_SUBSCRIPTIONS", "0"),
    ],
)
def test_bad_settings_fail_clearly(name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_settings_are_cached_until_reset(monkeypatch):
    monkeypatch.setenv("STREAMER_RATE_LIMIT", "11")
    reset_settings()
    assert get_settings().rate_limit == 11
    monkeypatch.setenv("STREAMER_RATE_LIMIT", "12")
    assert get_settings().rate_limit == 11
    reset_settings()
    assert get_settings().rate_limit == 12
    reset_settings()


def test_action_registration_rules():
    app = Streamer()

    @app.action("ok.name-1")
    def ok(request):
        return None

    assert app["ok.name-1"].func is ok
    assert list(app) == ["ok.name-1"]
    with pytest.raises(ValueError, match="already declared"):
        app.action("ok.name-1")
    with pytest.raises(ValueError, match="built-in"):
        app.action("ping")
    with pytest.raises(ValueError, match="does not match"):
        app.action("Bad Name")
    with pytest.raises(ValueError, match="timeout"):
        app.action("t", timeout=0)


def test_load_app_by_reference():
    assert load_app("streamer_handlers.demo:app") is demo_app
    with pytest.raises(ValueError, match="module:attribute"):
        load_app("streamer_handlers.demo")
    with pytest.raises(TypeError, match="not a Streamer"):
        load_app("streamer_handlers.demo:echo")


def test_function_specs_declare_the_four_functions():
    specs = {spec.name: spec for spec in function_specs(demo_app)}
    assert set(specs) == {"connect", "disconnect", "router", "processor"}
    for name, spec in specs.items():
        assert isinstance(spec, FunctionSpec)
        assert spec.handler == f"streamer_handlers.functions.{name}.handler"
        assert spec.memory == 3008
        assert all(isinstance(g, Grant) for g in spec.grants)
        for grant in spec.grants:
            if "*" in grant.resources:
                assert all(a.startswith("xray:") for a in grant.actions)
    assert specs["connect"].route_keys == ("$connect",)
    assert specs["connect"].trigger == "authorizer+websocket"
    assert specs["disconnect"].route_keys == ("$disconnect",)
    assert specs["processor"].route_keys == ()
    assert specs["processor"].trigger == "sqs"
    router = specs["router"]
    assert router.route_response is True
    assert router.timeout <= 29
    assert router.route_keys == tuple(
        sorted({"$default", *BUILTIN_ACTIONS, "announce", "echo", "generate_report"})
    )
    resources = {r for g in router.grants for r in g.resources}
    assert {"table:connections", "table:requests", "queue:work", "api:connections"} <= resources


def test_function_specs_follow_the_application():
    app = Streamer()
    app.action("zeta")(lambda request: None)
    router = next(spec for spec in function_specs(app) if spec.name == "router")
    assert "zeta" in router.route_keys


def test_function_specs_default_to_the_configured_app(monkeypatch):
    monkeypatch.setenv("STREAMER_APP", "streamer_handlers.demo:app")
    reset_settings()
    try:
        router = next(spec for spec in function_specs() if spec.name == "router")
    finally:
        reset_settings()
    assert "generate_report" in router.route_keys


def test_demo_app_over_the_handlers(stack):
    stack.reconfigure(app=demo_app)
    connection = stack.connect()
    reply = stack.send(connection, {"action": "echo", "id": "e", "payload": {"a": 1}})
    assert reply == {"type": "response", "request_id": "e", "result": {"a": 1}}
    bad = stack.send(connection, {"action": "generate_report", "payload": {"steps": 0}})
    assert bad["type"] == "acknowledgment"
    stack.send(connection, {"action": "generate_report", "id": "g", "payload": {"steps": 3}})
    stack.drain()
    frames = stack.frames(connection)
    assert frames[-1]["type"] == "complete"
    assert frames[-1]["result"]["rows"] == 30
    errors = stack.frames(connection, "error")
    assert [e["code"] for e in errors] == ["VALIDATION_ERROR"]


def test_demo_echo_returns_the_payload():
    from streamer_handlers import Request

    request = Request(id="1", action="echo", payload={"x": [1]}, user_id="u", tenant_id="t")
    assert demo_app["echo"].func(request) == {"x": [1]}


def _modules_after_import(module: str, watched: tuple[str, ...]) -> list[str]:
    """Which of ``watched`` a fresh interpreter has loaded once ``module`` is imported."""
    code = (
        f"import sys, json, {module};"
        f"print(json.dumps(sorted(m for m in {list(watched)!r} if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return list(json.loads(out))


HEAVY = (
    "boto3",
    "aws_xray_sdk",
    "jwt",
    "cryptography",
    "pydantic",
    "streamer_core.protocol",
    "aws_lambda_powertools.utilities.data_classes",
)


def test_router_and_connect_import_without_boto3_or_a_tracer():
    code = (
        "import sys, streamer_handlers.functions.router, streamer_handlers.functions.connect;"
        "print(sorted(m for m in ('boto3', 'aws_xray_sdk') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out.replace("'", '"')) == []


@pytest.mark.parametrize("function", ["connect", "disconnect"])
def test_connection_functions_import_neither_the_protocol_nor_aws_sdks(function):
    assert _modules_after_import(f"streamer_handlers.functions.{function}", HEAVY) == []


def test_router_imports_the_protocol_but_no_jwt_stack_or_aws_sdk():
    loaded = _modules_after_import("streamer_handlers.functions.router", HEAVY)
    assert loaded == ["pydantic", "streamer_core.protocol"]


def test_the_package_root_still_exports_every_name():
    import streamer_handlers
    import streamer_handlers._publish  # importing the module must not shadow the function

    for name in streamer_handlers.__all__:
        assert getattr(streamer_handlers, name) is not None
    assert callable(streamer_handlers.publish)
    from streamer_handlers import publish

    assert publish.__name__ == "publish"
    assert not isinstance(publish, type(sys))
    with pytest.raises(AttributeError):
        streamer_handlers.not_a_name  # noqa: B018


def test_a_public_key_file_configures_the_verifier(tmp_path, key_pair):
    from streamer_core.auth import TokenIssuer
    from streamer_handlers._lambda.runtime import build_verifier

    path = tmp_path / "jwt.pem"
    path.write_text(key_pair[1])
    verifier = build_verifier(Settings(jwt_public_key_file=str(path)))
    token = TokenIssuer(key_pair[0], algorithm="ES256").issue("alice", "acme")
    assert verifier.verify(token).user_id == "alice"


def test_disabled_metrics_are_dropped_not_accumulated(monkeypatch, capsys):
    from streamer_handlers._lambda.observability import count, flush_metrics, metrics

    flush_metrics()
    capsys.readouterr()
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    count("MessagesRouted")
    assert metrics.metric_set == {}  # not even kept until the flush
    flush_metrics()
    assert metrics.metric_set == {}
    assert capsys.readouterr().out == ""


def test_tracing_is_off_outside_lambda_and_when_disabled(monkeypatch):
    from streamer_handlers._lambda.observability import get_tracer, subsegment, tracing_enabled

    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    monkeypatch.delenv("POWERTOOLS_TRACE_DISABLED", raising=False)
    assert not tracing_enabled()
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "streamer-dev-router")
    assert tracing_enabled()
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    assert not tracing_enabled()
    assert get_tracer() is None
    with subsegment("noop"):
        pass
