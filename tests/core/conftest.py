"""Storage fixtures: DynamoDB emulated in-process by moto, tables built from the real specs."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from streamer_core.storage import (
    ConnectionStore,
    RequestStore,
    SubscriptionStore,
    create_tables,
)

ENV = "test"
START = 1_800_000_000.0  # a fixed epoch second, so expiry arithmetic reads plainly in tests


class FakeClock:
    """Time that only moves when a test says so."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def _dynamodb_client() -> Any:
    """One client for the whole run: building a boto3 client costs more than a moto test.

    Credentials, region and endpoint are explicit so that nothing from the environment can
    point it at a real account; moto intercepts its calls whenever a mock is active.
    """
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    client = session.client("dynamodb", endpoint_url="https://dynamodb.us-east-1.amazonaws.com")
    client.meta.events.register("before-call.dynamodb.Scan", _refuse_scan)
    return client


def _refuse_scan(**_kwargs: Any) -> None:
    """Storage must never Scan (it reads every tenant's items): any Scan fails the test."""
    raise AssertionError("storage issued a DynamoDB Scan")


@pytest.fixture
def dynamodb(_dynamodb_client: Any) -> Iterator[Any]:
    """A fresh, empty emulated DynamoDB with the Streamer tables of ENV."""
    with mock_aws():
        create_tables(_dynamodb_client, ENV)
        yield _dynamodb_client


@pytest.fixture
def connection_store(dynamodb: Any, clock: FakeClock) -> ConnectionStore:
    return ConnectionStore(dynamodb, f"streamer-{ENV}-connections", clock=clock)


@pytest.fixture
def subscription_store(dynamodb: Any, clock: FakeClock) -> SubscriptionStore:
    return SubscriptionStore(
        dynamodb, f"streamer-{ENV}-subscriptions", clock=clock, sleep=lambda _s: None
    )


@pytest.fixture
def request_store(dynamodb: Any, clock: FakeClock) -> RequestStore:
    return RequestStore(dynamodb, f"streamer-{ENV}-requests", clock=clock, ttl_seconds=3600)


class AtomicCallsClient:
    """The client with each API call applied atomically, as DynamoDB applies each write.

    moto checks a condition and applies the update in separate steps without a lock, so two
    threads can both pass the same condition, which DynamoDB never allows. Serialising
    single calls restores DynamoDB's guarantee and nothing more: the threads still
    interleave freely between calls, where a read-then-write in the store would race.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attribute(*args, **kwargs)

        return call


@pytest.fixture
def atomic_dynamodb(dynamodb: Any) -> Iterator[AtomicCallsClient]:
    """The emulator shared by racing threads, switching threads as often as Python allows."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield AtomicCallsClient(dynamodb)
    finally:
        sys.setswitchinterval(previous)
