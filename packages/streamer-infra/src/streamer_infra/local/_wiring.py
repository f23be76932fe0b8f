"""Turns the handlers' route metadata into the gateway's routes and the queue's function.

Routes are declared once, in the handlers (`streamer_handlers.deployment.function_specs`);
the Pulumi program and this module both read them, so an action added to an app shows up
here without touching infra.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from streamer_infra.local._gateway import Route, RouteTable
from streamer_infra.local._invoker import Handler, LocalFunction

__all__ = ["FunctionSpecLike", "Wiring", "resolve_handler", "wire"]


class FunctionSpecLike(Protocol):
    """What the local stack reads from a `streamer_handlers.deployment.FunctionSpec`.

    `handler` is a dotted path on AWS; a callable is accepted too, so tests can deploy
    small functions of their own through the same wiring.
    """

    @property
    def name(self) -> str: ...
    @property
    def handler(self) -> Any: ...
    @property
    def route_keys(self) -> tuple[str, ...]: ...
    @property
    def timeout(self) -> int: ...
    @property
    def memory(self) -> int: ...
    @property
    def trigger(self) -> str: ...
    @property
    def route_response(self) -> bool: ...


@dataclass(frozen=True)
class Wiring:
    routes: RouteTable
    queue_function: LocalFunction | None


def resolve_handler(handler: Any) -> Handler:
    """Import `package.module.attribute`, as the Lambda runtime does with a handler string."""
    if callable(handler):
        return handler  # type: ignore[no-any-return]
    module_name, _, attribute = str(handler).rpartition(".")
    if not module_name:
        raise ValueError(f"handler {handler!r} must look like 'package.module.function'")
    target = getattr(importlib.import_module(module_name), attribute)
    if not callable(target):
        raise TypeError(f"handler {handler!r} is not callable")
    return target  # type: ignore[no-any-return]


def _not_in_process(event: dict[str, Any], context: Any) -> Any:
    raise RuntimeError("this function runs from the archive, in a process of its own")


def wire(
    specs: Sequence[FunctionSpecLike],
    *,
    concurrency: int,
    sqs_concurrency: int,
    in_process: bool = True,
) -> Wiring:
    """Routes and the queue's function from `specs`.

    `in_process=False` leaves the handler strings unimported: an archive's runtime imports
    them in its own processes, and the development environment's copy must not stand in."""
    routes: dict[str, Route] = {}
    authorizer: LocalFunction | None = None
    queue_function: LocalFunction | None = None
    for spec in specs:
        is_queue = spec.trigger == "sqs"
        entry = None if callable(spec.handler) else str(spec.handler)
        if not in_process and entry is None:
            raise ValueError(f"function {spec.name} is a callable: it cannot run from an archive")
        function = LocalFunction(
            name=spec.name,
            handler=resolve_handler(spec.handler) if in_process else _not_in_process,
            entry=entry,
            timeout=float(spec.timeout),
            memory=int(spec.memory),
            concurrency=sqs_concurrency if is_queue else concurrency,
        )
        if is_queue:
            queue_function = function
            continue
        if spec.trigger == "authorizer+websocket":
            authorizer = function
        for key in spec.route_keys:
            routes[key] = Route(function, route_response=bool(spec.route_response))
    return Wiring(RouteTable(routes, authorizer), queue_function)
