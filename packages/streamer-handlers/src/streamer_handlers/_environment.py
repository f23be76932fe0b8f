"""The environment every function runs with, declared once for AWS and for `streamer dev`.

The handlers read their configuration only from environment variables (``Settings.from_env``).
The Pulumi program and the local stack both build those variables with
:func:`function_environment`, so a variable cannot exist in one place and be missing in the
other. The values are generic: the deployment passes Pulumi outputs (table names and ARNs only
known at apply time), the local stack passes plain strings.

What Lambda itself adds (``AWS_LAMBDA_FUNCTION_NAME``, ``AWS_REGION``, the X-Ray daemon address,
``_X_AMZN_TRACE_ID`` per invocation) is not part of this contract: the runtime sets it on AWS,
and the local runner that stands for the runtime sets it locally.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

from streamer_handlers._lambda.settings import Settings
from streamer_handlers._routes import METRICS_NAMESPACE, METRICS_SERVICE

__all__ = ["function_environment", "service_name"]

V = TypeVar("V")

_DEFAULTS = Settings()


def service_name(env: str) -> str:
    """The service name Powertools logs under: one per environment, so that logs of several
    environments in one account never look alike."""
    return f"{METRICS_SERVICE}-{env}"


def function_environment(
    env: str,
    *,
    tables: Mapping[str, V],
    queue_url: V,
    management_endpoint: V,
    jwt_public_key_secret: V,
    jwt_public_key: V | None = None,
    log_level: str = "INFO",
    app: str | None = None,
    jwt_issuer: str | None = None,
    jwt_audience: str | None = None,
    allowed_tenants: str | Iterable[str] | None = None,
    rate_limit: int | None = None,
    max_receive_count: int = _DEFAULTS.max_receive_count,
    processor_timeout: int = _DEFAULTS.processor_timeout,
) -> dict[str, V | str]:
    """The variables of every function, identical for all four so that any of them can serve
    any route the metadata gives it.

    ``tables`` maps the logical table names of ``streamer_core.storage.tables`` to physical
    names. Tracing is on wherever the functions run as Lambda functions; Powertools only starts
    the tracer inside Lambda (``AWS_LAMBDA_FUNCTION_NAME`` set), which is what keeps it off in
    processes that merely import the handlers.
    """
    variables: dict[str, V | str] = {
        "STREAMER_ENV": env,
        "STREAMER_QUEUE_URL": queue_url,
        "STREAMER_MANAGEMENT_ENDPOINT": management_endpoint,
        "STREAMER_JWT_PUBLIC_KEY_SECRET": jwt_public_key_secret,
        "STREAMER_MAX_RECEIVE_COUNT": str(max_receive_count),
        "STREAMER_PROCESSOR_TIMEOUT": str(processor_timeout),
        "POWERTOOLS_SERVICE_NAME": service_name(env),
        "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
        "POWERTOOLS_LOG_LEVEL": log_level.upper(),
        "POWERTOOLS_TRACE_DISABLED": "false",
    }
    for logical, name in sorted(tables.items()):
        variables[f"STREAMER_{logical.upper()}_TABLE"] = name
    if allowed_tenants is not None and not isinstance(allowed_tenants, str):
        allowed_tenants = ",".join(allowed_tenants)
    optional: dict[str, str | None] = {
        "STREAMER_APP": app,
        "STREAMER_JWT_ISSUER": jwt_issuer,
        "STREAMER_JWT_AUDIENCE": jwt_audience,
        "STREAMER_ALLOWED_TENANTS": allowed_tenants,
        "STREAMER_RATE_LIMIT": str(rate_limit) if rate_limit else None,
    }
    variables.update({name: value for name, value in optional.items() if value is not None})
    if jwt_public_key is not None:
        variables["STREAMER_JWT_PUBLIC_KEY"] = jwt_public_key
    return variables
