"""What a deployment of Streamer needs from the handlers: one import for the Pulumi program,
the local stack and anything else that runs the functions.

- the functions' declaration (:func:`function_specs`, :class:`FunctionSpec`, :class:`Grant`)
  and the metric names alarms must match;
- the environment contract (:func:`function_environment`) and the settings it feeds;
- the runtime seam (:class:`Runtime`, :func:`set_runtime`): how a process gives the
  functions other clients, storage or a sender, as the local stack and tests do;
- the management-API sender and what it reports.

Application authors need none of this: their API is :mod:`streamer_handlers`.
"""

from __future__ import annotations

from ._app import load_app
from ._delivery.management import (
    ConnectionPruner,
    DeliveryReport,
    ManagementSender,
    Outcome,
    Sender,
    settle,
)
from ._environment import function_environment, service_name
from ._lambda.observability import logger
from ._lambda.runtime import Runtime, get_runtime, reset_runtime, set_runtime
from ._lambda.settings import Settings, SettingsError, get_settings, reset_settings
from ._routes import (
    DEFAULT_MEMORY_MB,
    METRICS_NAMESPACE,
    METRICS_SERVICE,
    PROCESSOR_TIMEOUT_SECONDS,
    FunctionSpec,
    Grant,
    function_specs,
    metric_dimensions,
)

__all__ = [
    "DEFAULT_MEMORY_MB",
    "METRICS_NAMESPACE",
    "METRICS_SERVICE",
    "PROCESSOR_TIMEOUT_SECONDS",
    "ConnectionPruner",
    "DeliveryReport",
    "FunctionSpec",
    "Grant",
    "ManagementSender",
    "Outcome",
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
]
