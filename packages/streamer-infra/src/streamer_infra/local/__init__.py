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
    from streamer_infra.local._background import BackgroundStack
    from streamer_infra.local._emulator import AwsEmulator, shared_emulator
    from streamer_infra.local._gateway import (
        Gateway,
        GatewayCounters,
        LiveConnection,
        Route,
        RouteTable,
    )
    from streamer_infra.local._invoker import Invocation, Invoker, LocalFunction, ThreadInvoker
    from streamer_infra.local._keys import DEV_ISSUER, DevKeys, keys_from_files, load_or_create_keys
    from streamer_infra.local._limits import GatewayLimits
    from streamer_infra.local._processes import ProcessInvoker
    from streamer_infra.local._provision import Provisioned
    from streamer_infra.local._stack import LocalStack, LocalStackConfig, StackAlreadyRunningError
    from streamer_infra.local._wiring import FunctionSpecLike
    from streamer_infra.local._xray import TraceSegment, XRaySink

_EXPORTS = {
    "BackgroundStack": "_background",
    "AwsEmulator": "_emulator",
    "shared_emulator": "_emulator",
    "Gateway": "_gateway",
    "GatewayCounters": "_gateway",
    "LiveConnection": "_gateway",
    "Route": "_gateway",
    "RouteTable": "_gateway",
    "Invocation": "_invoker",
    "Invoker": "_invoker",
    "LocalFunction": "_invoker",
    "ThreadInvoker": "_invoker",
    "ProcessInvoker": "_processes",
    "TraceSegment": "_xray",
    "XRaySink": "_xray",
    "DEV_ISSUER": "_keys",
    "DevKeys": "_keys",
    "keys_from_files": "_keys",
    "load_or_create_keys": "_keys",
    "GatewayLimits": "_limits",
    "Provisioned": "_provision",
    "LocalStack": "_stack",
    "LocalStackConfig": "_stack",
    "StackAlreadyRunningError": "_stack",
    "FunctionSpecLike": "_wiring",
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
