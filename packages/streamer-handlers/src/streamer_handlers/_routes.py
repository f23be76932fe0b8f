"""The one declaration of the functions, their routes and the AWS permissions they need.

The Pulumi program and the local gateway both read :func:`function_specs`; adding an
action to the application adds its route key here, so infrastructure never needs a hand
edit. Resources are symbolic names that the deployment resolves to ARNs:
``table:<logical name>`` (and ``.../index/*``), ``queue:work``, ``queue:dead_letter``,
``secret:jwt_public``, ``api:connections`` (this API's ``@connections``), ``kms:key``,
and ``*`` only for actions that have no resource-level permissions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from streamer_handlers._app import Streamer

METRICS_NAMESPACE = "Streamer"
METRICS_SERVICE = "streamer"


def metric_dimensions(env: str) -> dict[str, str]:
    """The dimensions every custom metric carries; alarms and dashboards must name exactly these.

    CloudWatch matches a metric only on its full dimension set, so the functions that emit and
    the program that alarms read them from this one place.
    """
    return {"service": METRICS_SERVICE, "environment": env}


DEFAULT_MEMORY_MB = 3008
"""3008 MB buys two vCPUs: the deployment document's choice for every environment."""
ROUTER_TIMEOUT_SECONDS = 29
"""API Gateway's integration limit; sync actions stop earlier (STREAMER_SYNC_TIMEOUT)."""
PROCESSOR_TIMEOUT_SECONDS = 900


@dataclass(frozen=True)
class Grant:
    """IAM actions allowed on symbolic resources."""

    actions: tuple[str, ...]
    resources: tuple[str, ...]


@dataclass(frozen=True)
class FunctionSpec:
    """One Lambda function: its entry point, what triggers it, and what it may touch."""

    name: str
    handler: str
    route_keys: tuple[str, ...]
    timeout: int
    memory: int = DEFAULT_MEMORY_MB
    grants: tuple[Grant, ...] = ()
    trigger: Literal["websocket", "authorizer+websocket", "sqs"] = "websocket"
    route_response: bool = False


_TRACING = Grant(("xray:PutTraceSegments", "xray:PutTelemetryRecords"), ("*",))
_KMS = Grant(("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"), ("kms:key",))
_MANAGE_CONNECTIONS = Grant(("execute-api:ManageConnections",), ("api:connections",))
_PRUNE = (
    Grant(("dynamodb:DeleteItem",), ("table:connections",)),
    Grant(("dynamodb:Query", "dynamodb:BatchWriteItem"), ("table:subscriptions",)),
)
_FOLLOWERS = Grant(("dynamodb:Query",), ("table:subscriptions/index/*",))


def _handler(name: str) -> str:
    return f"streamer_handlers.functions.{name}.handler"


def function_specs(app: Streamer | None = None) -> tuple[FunctionSpec, ...]:
    """The four functions; the router's route keys include every action of ``app``.

    ``app`` defaults to the application named by STREAMER_APP (the demo app).
    """
    if app is None:
        from streamer_handlers._app import load_app
        from streamer_handlers._lambda.settings import get_settings

        app = load_app(get_settings().app)
    from streamer_core import BUILTIN_ACTIONS  # the protocol loads here, not at import

    router_keys = tuple(sorted({"$default", *BUILTIN_ACTIONS, *app}))
    return (
        FunctionSpec(
            name="connect",
            handler=_handler("connect"),
            route_keys=("$connect",),
            timeout=10,
            grants=(
                Grant(("dynamodb:PutItem",), ("table:connections",)),
                Grant(("secretsmanager:GetSecretValue",), ("secret:jwt_public",)),
                _KMS,
                _TRACING,
            ),
            trigger="authorizer+websocket",
        ),
        FunctionSpec(
            name="disconnect",
            handler=_handler("disconnect"),
            route_keys=("$disconnect",),
            timeout=10,
            grants=(*_PRUNE, _KMS, _TRACING),
        ),
        FunctionSpec(
            name="router",
            handler=_handler("router"),
            route_keys=router_keys,
            timeout=ROUTER_TIMEOUT_SECONDS,
            grants=(
                Grant(("dynamodb:GetItem", "dynamodb:UpdateItem"), ("table:connections",)),
                Grant(
                    ("dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Query"),
                    ("table:subscriptions",),
                ),
                _FOLLOWERS,
                Grant(
                    ("dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem"),
                    ("table:requests",),
                ),
                Grant(("sqs:SendMessage",), ("queue:work",)),
                _MANAGE_CONNECTIONS,
                *_PRUNE,
                _KMS,
                _TRACING,
            ),
            route_response=True,
        ),
        FunctionSpec(
            name="processor",
            handler=_handler("processor"),
            route_keys=(),
            timeout=PROCESSOR_TIMEOUT_SECONDS,
            grants=(
                Grant(("dynamodb:GetItem", "dynamodb:UpdateItem"), ("table:requests",)),
                _FOLLOWERS,
                Grant(
                    (
                        "sqs:ReceiveMessage",
                        "sqs:DeleteMessage",
                        "sqs:GetQueueAttributes",
                        "sqs:ChangeMessageVisibility",
                    ),
                    ("queue:work",),
                ),
                # A queued publish too large to send at once becomes shards, and a shard
                # that could not reach everyone queues a retry.
                Grant(("sqs:SendMessage",), ("queue:work",)),
                # A shard's connections are checked by their subscriptions' keys.
                Grant(("dynamodb:BatchGetItem",), ("table:subscriptions",)),
                _MANAGE_CONNECTIONS,
                *_PRUNE,
                _KMS,
                _TRACING,
            ),
            trigger="sqs",
        ),
    )
