"""Streamer's server side: the action API applications write and the four Lambda functions.

An application declares actions on a :class:`Streamer` object; the functions in
``streamer_handlers.functions`` serve it on AWS (and in the local stack) unchanged.
"""

from .app import ActionSpec, Streamer, load_app
from .errors import ActionError, Cancelled
from .progress import ProgressReporter
from .publish import publish
from .request import Request
from .routes import FunctionSpec, Grant, function_specs
from .runtime import Runtime, get_runtime, reset_runtime, set_runtime
from .sender import ConnectionPruner, DeliveryReport, ManagementSender, Sender
from .settings import Settings, SettingsError, get_settings, reset_settings

__all__ = [
    "ActionError",
    "ActionSpec",
    "Cancelled",
    "ConnectionPruner",
    "DeliveryReport",
    "FunctionSpec",
    "Grant",
    "ManagementSender",
    "ProgressReporter",
    "Request",
    "Runtime",
    "Sender",
    "Settings",
    "SettingsError",
    "Streamer",
    "function_specs",
    "get_runtime",
    "get_settings",
    "load_app",
    "publish",
    "reset_runtime",
    "reset_settings",
    "set_runtime",
]
