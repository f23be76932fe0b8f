"""Each package's public API, pinned: a change to it must be a deliberate edit of this file.

The public surface of a package is what its ``__init__`` (or a public module) exports in
``__all__``, and the modules without a leading underscore; everything else may change
without notice.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest

PUBLIC_NAMES: dict[str, list[str]] = {
    "streamer_infra": [],
    "streamer_infra.local": [
        "AwsEmulator",
        "BackgroundStack",
        "DEV_ISSUER",
        "DevKeys",
        "FunctionSpecLike",
        "Gateway",
        "GatewayCounters",
        "GatewayLimits",
        "Invocation",
        "Invoker",
        "LiveConnection",
        "LocalFunction",
        "LocalStack",
        "LocalStackConfig",
        "ProcessInvoker",
        "Provisioned",
        "Route",
        "RouteTable",
        "StackAlreadyRunningError",
        "ThreadInvoker",
        "TraceSegment",
        "XRaySink",
        "keys_from_files",
        "load_or_create_keys",
        "shared_emulator",
    ],
    "streamer_core": [
        "ACTION_PATTERN",
        "AcknowledgmentFrame",
        "BUILTIN_ACTIONS",
        "ClientFrame",
        "CompleteFrame",
        "ErrorCode",
        "ErrorFrame",
        "ErrorInfo",
        "EventFrame",
        "FrameTooLargeError",
        "ID_PATTERN",
        "MAX_FRAME_BYTES",
        "MAX_NESTING_DEPTH",
        "PongFrame",
        "ProgressFrame",
        "ProgressState",
        "ProtocolError",
        "RequestRefPayload",
        "RequestSnapshot",
        "RequestStatus",
        "ResponseFrame",
        "ServerFrame",
        "StatusFrame",
        "SubscribedFrame",
        "TERMINAL_STATUSES",
        "TOPIC_PATTERN",
        "TopicPayload",
        "UnsubscribedFrame",
        "builtin_payload",
        "encode",
        "new_request_id",
        "parse_client_frame",
        "parse_server_frame",
    ],
    "streamer_core.auth": [
        "AuthError",
        "AuthReason",
        "KeySet",
        "KeySource",
        "Principal",
        "SecretsManagerKeySource",
        "TokenIssuer",
        "TokenVerifier",
        "generate_key_pair",
        "redact_tokens",
    ],
    "streamer_core.storage": [
        "CONNECTIONS",
        "Clock",
        "ConflictError",
        "Connection",
        "ConnectionStore",
        "IllegalTransitionError",
        "IndexSpec",
        "InvalidTokenError",
        "ItemTooLargeError",
        "KeyAttribute",
        "Page",
        "REQUESTS",
        "RequestKey",
        "RequestRecord",
        "RequestStore",
        "SUBSCRIPTIONS",
        "Storage",
        "StorageError",
        "SubscriptionStore",
        "TABLES",
        "TableSpec",
        "UnprocessedItemsError",
        "create_tables",
    ],
    "streamer_core.limits": [
        "IDLE_TIMEOUT_SECONDS",
        "MAX_CONNECTION_SECONDS",
        "MAX_FRAME_BYTES",
        "MAX_HEADER_BYTES",
        "MAX_NESTING_DEPTH",
        "RequestStatus",
    ],
    "streamer_handlers": [
        "ActionError",
        "ActionSpec",
        "Cancelled",
        "DeliveryReport",
        "ProgressReporter",
        "Request",
        "Streamer",
        "publish",
    ],
    "streamer_handlers.deployment": [
        "ConnectionPruner",
        "DEFAULT_MEMORY_MB",
        "DeliveryReport",
        "FunctionSpec",
        "Grant",
        "METRICS_NAMESPACE",
        "METRICS_SERVICE",
        "ManagementSender",
        "Outcome",
        "PROCESSOR_TIMEOUT_SECONDS",
        "Runtime",
        "Sender",
        "Settings",
        "SettingsError",
        "function_environment",
        "function_specs",
        "get_runtime",
        "get_settings",
        "load_app",
        "logger",
        "metric_dimensions",
        "reset_runtime",
        "reset_settings",
        "service_name",
        "set_runtime",
        "settle",
    ],
    "streamer_handlers.testing": ["Outcome", "run_action"],
    "streamer_client": [
        "AuthenticationFailed",
        "ClientClosed",
        "ClientSocket",
        "ConflictError",
        "ConnectionFailed",
        "ConnectionState",
        "Connector",
        "ErrorCode",
        "EventFrame",
        "ForbiddenError",
        "InternalServerError",
        "InvalidRequest",
        "Job",
        "NotFoundError",
        "ProgressCallback",
        "ProgressFrame",
        "RateLimitedError",
        "RemoteError",
        "RemoteTimeoutError",
        "RequestCancelledError",
        "RequestStatus",
        "RequestTimeout",
        "StateCallback",
        "StreamerClient",
        "StreamerError",
        "Subscription",
        "TokenProvider",
        "UnauthorizedError",
        "ValidationError",
    ],
    "streamer_client.sync": ["Job", "StreamerClient", "Subscription"],
    "streamer_client.testing": [
        "ErrorReply",
        "Handshake",
        "MockConnection",
        "MockJob",
        "MockRequest",
        "MockServer",
        "Progress",
    ],
}

PUBLIC_MODULES: dict[str, list[str]] = {
    "streamer_core": ["auth", "backoff", "json_schema", "limits", "protocol", "storage"],
    "streamer_core.auth": [],
    "streamer_handlers": ["demo", "deployment", "functions", "testing"],
    "streamer_handlers.functions": ["connect", "disconnect", "processor", "router"],
    "streamer_client": ["cli", "sync", "testing"],
    "streamer_infra": ["archive_twin", "aws", "build", "cli", "deploy", "local"],
    "streamer_infra.local": [],
}


@pytest.mark.parametrize("module", sorted(PUBLIC_NAMES))
def test_the_exported_names_are_the_pinned_ones(module: str) -> None:
    imported = importlib.import_module(module)
    assert sorted(imported.__all__) == PUBLIC_NAMES[module]
    for name in imported.__all__:
        assert getattr(imported, name) is not None, name


@pytest.mark.parametrize("package", sorted(PUBLIC_MODULES))
def test_modules_without_a_leading_underscore_are_the_pinned_ones(package: str) -> None:
    imported = importlib.import_module(package)
    public = sorted(
        info.name
        for info in pkgutil.iter_modules(imported.__path__)
        if not info.name.startswith("_")
    )
    assert public == PUBLIC_MODULES[package]
