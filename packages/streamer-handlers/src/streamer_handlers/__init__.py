"""Streamer's server side: the action API applications write and the four Lambda functions.

An application declares actions on a :class:`Streamer` object; the functions in
``streamer_handlers.functions`` serve it on AWS (and in the local stack) unchanged.

Every name loads on first use (PEP 562): importing a function module runs this file
first, and ``$connect`` must not pay at cold start for the action API, the progress
reporter or the protocol's models it never uses. ``publish`` is the exception: the function
shares its name with its module, and importing that module (which anything may do) would
rebind the package attribute to the module, so the function is bound here first; the
module defers its own heavy imports to the first call.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import ActionSpec, Streamer, load_app
    from .errors import ActionError, Cancelled
    from .progress import ProgressReporter
    from .request import Request
    from .routes import FunctionSpec, Grant, function_specs
    from .runtime import Runtime, get_runtime, reset_runtime, set_runtime
    from .sender import ConnectionPruner, DeliveryReport, ManagementSender, Sender
    from .settings import Settings, SettingsError, get_settings, reset_settings

from .publish import publish

_SOURCES: dict[str, tuple[str, ...]] = {
    "app": ("ActionSpec", "Streamer", "load_app"),
    "errors": ("ActionError", "Cancelled"),
    "progress": ("ProgressReporter",),
    "request": ("Request",),
    "routes": ("FunctionSpec", "Grant", "function_specs"),
    "runtime": ("Runtime", "get_runtime", "reset_runtime", "set_runtime"),
    "sender": ("ConnectionPruner", "DeliveryReport", "ManagementSender", "Sender"),
    "settings": ("Settings", "SettingsError", "get_settings", "reset_settings"),
}
_MODULE_OF = {name: module for module, names in _SOURCES.items() for name in names}

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


if not TYPE_CHECKING:
    # Hidden from type checkers, which see the explicit imports above instead.

    def __getattr__(name: str) -> Any:
        module = _MODULE_OF.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
