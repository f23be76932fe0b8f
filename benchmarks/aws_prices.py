"""AWS's published prices for what Streamer uses, and what an operation comes to with them.

One table, in one place, with the day it was read and where from. Prices are us-east-1, on
demand, without free tiers or volume discounts (those only lower a bill), for the
deployment's architecture (arm64) and memory (3008 MB). docs/costs.md explains each model.

A Lambda invocation's duration on AWS is not measured here: the emulator answers in a
fraction of a millisecond where DynamoDB, SQS and the management API take milliseconds. It
is estimated as the handler's CPU time, measured, plus the round trips it waits on, each at
the latency assumed in :data:`ROUND_TRIP_MS` (an assumption, stated wherever it is used).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

READ_ON = "2026-12-03"
REGION = "us-east-1"


@dataclass(frozen=True)
class Price:
    usd: float
    per: str
    source: str


PRICES: dict[str, Price] = {
    "lambda_gb_second": Price(
        0.0000133334,
        "GB-second of arm64 duration (first 7.5 billion GB-s a month), billed per 1 ms, "
        "INIT included since 2025-08-01",
        "https://aws.amazon.com/lambda/pricing/",
    ),
    "lambda_request": Price(0.20 / 1e6, "invocation", "https://aws.amazon.com/lambda/pricing/"),
    "websocket_message": Price(
        1.00 / 1e6,
        "WebSocket message sent or received, metered in 32 KB increments (first billion a month)",
        "https://aws.amazon.com/api-gateway/pricing/",
    ),
    "websocket_connection_minute": Price(
        0.25 / 1e6, "connection minute", "https://aws.amazon.com/api-gateway/pricing/"
    ),
    "dynamodb_write_unit": Price(
        0.625 / 1e6,
        "on-demand write request unit (a write of up to 1 KB; a refused conditional write "
        "costs one too), standard table class",
        "https://aws.amazon.com/dynamodb/pricing/on-demand/",
    ),
    "dynamodb_read_unit": Price(
        0.125 / 1e6,
        "on-demand read request unit (a strongly consistent read of up to 4 KB, or two "
        "eventually consistent ones)",
        "https://aws.amazon.com/dynamodb/pricing/on-demand/",
    ),
    "sqs_request": Price(
        0.40 / 1e6,
        "standard-queue request, per 64 KB chunk of payload (the event source mapping's "
        "receives and deletes included)",
        "https://aws.amazon.com/sqs/pricing/",
    ),
}
"""Where an official page renders its figures client-side, they were checked against
published quotations of that page (for example the Lambda and SQS guides at
cloudchipr.com/blog/aws-lambda-pricing and cloudburn.io/blog/amazon-sqs-pricing, the
DynamoDB price cut of 2024-11-01 at airbyte.com/data-engineering-resources/dynamodb-pricing
and amnic.com/blogs/aws-api-gateway-pricing for WebSocket APIs)."""

MEMORY_MB = 3008
"""The deployment's memory for every function (DESIGN.md, all environments)."""
ONE_VCPU_MB = 1769
"""Lambda gives a function one full vCPU at 1,769 MB and CPU in proportion to memory."""

ROUND_TRIP_MS: dict[str, float] = {
    "dynamodb": 5.0,
    "sqs": 10.0,
    "apigatewaymanagementapi": 20.0,
}
"""Assumed round trips from a function to each service inside the region (not measured
here): single-digit milliseconds for DynamoDB, about ten for SQS, more for a post through
the management API, which goes out to the WebSocket."""

SUBSCRIPTION_ITEM_BYTES = 150
"""Size of one subscription as DynamoDB counts it (names and values of its six attributes),
for the read units of a subscriber query."""


def price(name: str) -> float:
    return PRICES[name].usd


def cpu_share(memory_mb: int) -> float:
    """vCPUs Lambda gives a function of ``memory_mb``."""
    return memory_mb / ONE_VCPU_MB


def slowdown(memory_mb: int) -> float:
    """How much longer one thread's CPU work takes at ``memory_mb`` than on a full vCPU.

    Handler code is one Python thread (the GIL keeps even the sender's pool to about one
    core), so it never runs faster than one vCPU allows: memory above 1,769 MB buys it
    nothing, memory below stretches it.
    """
    return max(1.0, 1.0 / cpu_share(memory_mb))


def billed_ms(cpu_ms: float, wait_ms: float, memory_mb: int = MEMORY_MB) -> int:
    """One invocation's billed duration: its CPU (``cpu_ms`` on a full vCPU) plus its waits."""
    return max(1, math.ceil(cpu_ms * slowdown(memory_mb) + wait_ms))


def lambda_usd(invocations: float, billed: float, memory_mb: int = MEMORY_MB) -> float:
    """Requests plus duration of ``invocations`` that each bill ``billed`` ms."""
    gb_seconds = invocations * billed / 1000 * memory_mb / 1024
    return invocations * price("lambda_request") + gb_seconds * price("lambda_gb_second")


def wait_ms(requests: dict[str, float]) -> float:
    """Time spent waiting on ``requests`` ({service: count}) made one after the other."""
    return sum(ROUND_TRIP_MS.get(service, 0.0) * n for service, n in requests.items())


def query_read_units(items: int) -> float:
    """Read units of an eventually consistent index query returning ``items`` subscriptions."""
    return math.ceil(items * SUBSCRIPTION_ITEM_BYTES / 4096) * 0.5
