"""The application object: a registry of actions declared with ``@app.action``.

The same registry drives the router (what to run), the processor (what a queued request
means) and the route metadata (which route keys the gateway declares), so declaring an
action is the only step needed to expose it.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from streamer_core import ACTION_PATTERN, BUILTIN_ACTIONS

F = TypeVar("F", bound=Callable[..., Any])
_ACTION_RE = re.compile(ACTION_PATTERN)


@dataclass(frozen=True)
class ActionSpec:
    """One declared action and how it must be run."""

    name: str
    func: Callable[..., Any]
    asynchronous: bool = False
    permissions: frozenset[str] = frozenset()
    timeout: float | None = None

    @property
    def is_coroutine(self) -> bool:
        """Whether ``func`` is an ``async def`` and needs an event loop."""
        return inspect.iscoroutinefunction(self.func)


class Streamer(Mapping[str, ActionSpec]):
    """A set of actions; read-only mapping from action name to its :class:`ActionSpec`."""

    def __init__(self) -> None:
        self._actions: dict[str, ActionSpec] = {}

    def action(
        self,
        name: str,
        *,
        asynchronous: bool = False,
        permissions: Iterable[str] = (),
        timeout: float | None = None,
    ) -> Callable[[F], F]:
        """Declare ``name`` as an action served by the decorated function.

        ``asynchronous=True`` queues the work and streams progress: the function then takes
        ``(request, progress)``. Otherwise it takes ``(request)`` and answers within the
        route's deadline. ``timeout`` (seconds) bounds one run; sync actions are bounded by
        STREAMER_SYNC_TIMEOUT in any case.
        """
        if not _ACTION_RE.fullmatch(name):
            raise ValueError(f"action name {name!r} does not match {ACTION_PATTERN}")
        if name in BUILTIN_ACTIONS:
            raise ValueError(f"{name!r} is a built-in action and cannot be redefined")
        if name in self._actions:
            raise ValueError(f"action {name!r} is already declared")
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive")

        def register(func: F) -> F:
            self._actions[name] = ActionSpec(
                name=name,
                func=func,
                asynchronous=asynchronous,
                permissions=frozenset(permissions),
                timeout=timeout,
            )
            return func

        return register

    def __getitem__(self, name: str) -> ActionSpec:
        return self._actions[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._actions)

    def __len__(self) -> int:
        return len(self._actions)


def load_app(reference: str) -> Streamer:
    """Import the application named ``module:attribute`` (STREAMER_APP)."""
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"STREAMER_APP must look like 'module:attribute', got {reference!r}")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    if not isinstance(target, Streamer):
        raise TypeError(f"{reference} is a {type(target).__name__}, not a Streamer application")
    return target
