"""Streamer's server side for application authors: the action API and server-side publish.

An application declares actions on a :class:`Streamer` object; the functions in
``streamer_handlers.functions`` serve it on AWS (and in the local stack) unchanged. What a
deployment needs (function specs, the environment contract, the runtime seam) is in
:mod:`streamer_handlers.deployment`; test doubles are in :mod:`streamer_handlers.testing`.
Everything else is private (a leading underscore).

Every name loads on first use (PEP 562): importing a function module runs this file first,
and ``$connect`` must not pay at cold start for the action API, the progress reporter or
the protocol's models it never uses.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._app import ActionSpec, Streamer
    from ._delivery.management import DeliveryReport
    from ._errors import ActionError, Cancelled
    from ._progress import ProgressReporter
    from ._publish import publish
    from ._request import Request

_SOURCES: dict[str, tuple[str, ...]] = {
    "_app": ("ActionSpec", "Streamer"),
    "_delivery.management": ("DeliveryReport",),
    "_errors": ("ActionError", "Cancelled"),
    "_progress": ("ProgressReporter",),
    "_publish": ("publish",),
    "_request": ("Request",),
}
_MODULE_OF = {name: module for module, names in _SOURCES.items() for name in names}

__all__ = [
    "ActionError",
    "ActionSpec",
    "Cancelled",
    "DeliveryReport",
    "ProgressReporter",
    "Request",
    "Streamer",
    "publish",
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
