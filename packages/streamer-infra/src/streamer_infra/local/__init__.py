"""The local stack: API Gateway WebSocket, Lambda and an AWS emulator in one process.

`streamer dev` runs it from the command line; tests and benchmarks start it with
`async with LocalStack(LocalStackConfig(port=0)) as stack:` (or `BackgroundStack` from
synchronous code). Names load on first use: `streamer token` needs the key helpers only,
not moto and aiohttp, and should start as fast as a CLI can.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .background import BackgroundStack
    from .emulator import AwsEmulator, shared_emulator
    from .gateway import Gateway, GatewayCounters, LiveConnection, Route, RouteTable
    from .invoker import Invocation, Invoker, LocalFunction, ThreadInvoker
    from .keys import DEV_ISSUER, DevKeys, keys_from_files, load_or_create_keys
    from .limits import GatewayLimits
    from .processes import ProcessInvoker
    from .provision import Provisioned
    from .stack import LocalStack, LocalStackConfig, StackAlreadyRunningError
    from .wiring import FunctionSpecLike
    from .xray import TraceSegment, XRaySink

_EXPORTS = {
    "BackgroundStack": "background",
    "AwsEmulator": "emulator",
    "shared_emulator": "emulator",
    "Gateway": "gateway",
    "GatewayCounters": "gateway",
    "LiveConnection": "gateway",
    "Route": "gateway",
    "RouteTable": "gateway",
    "Invocation": "invoker",
    "Invoker": "invoker",
    "LocalFunction": "invoker",
    "ThreadInvoker": "invoker",
    "ProcessInvoker": "processes",
    "TraceSegment": "xray",
    "XRaySink": "xray",
    "DEV_ISSUER": "keys",
    "DevKeys": "keys",
    "keys_from_files": "keys",
    "load_or_create_keys": "keys",
    "GatewayLimits": "limits",
    "Provisioned": "provision",
    "LocalStack": "stack",
    "LocalStackConfig": "stack",
    "StackAlreadyRunningError": "stack",
    "FunctionSpecLike": "wiring",
}

__all__ = [
    "DEV_ISSUER",
    "AwsEmulator",
    "BackgroundStack",
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
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
