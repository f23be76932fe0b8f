"""Test doubles for calling the handlers in-process, shared by the handler and reliability suites.

Both suites drive the four functions on moto with the local gateway's event shapes
(`streamer_infra.local._events`); what they need besides is here: the Lambda context object,
a sender that records instead of posting, and a fresh set of tables and work queue per test.
Importable as ``handler_doubles`` once ``tests/handlers`` is on ``sys.path`` (both conftests
put it there).
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws
from streamer_core.storage import create_tables
from streamer_handlers import DeliveryReport

REGION = "us-east-1"
ACCOUNT = "123456789012"

_ids = itertools.count(1)


class FakeLambdaContext:
    """The parts of Lambda's context object the handlers read; the time left never runs down."""

    function_name = "streamer-test"
    request_id_prefix = "req"
    memory_limit_in_mb = 3008

    def __init__(self, remaining_ms: int = 300_000) -> None:
        self.invoked_function_arn = (
            f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"
        )
        self.aws_request_id = f"{self.request_id_prefix}-{next(_ids)}"
        self._remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining_ms


@dataclass
class RecordingSender:
    """Records every frame posted to every connection; ids in ``gone`` answer like a 410.

    ``on_gone`` is where a test plugs the production pruner, so the storage side of a 410 is
    the real one.
    """

    gone: set[str] = field(default_factory=set)
    on_gone: Callable[[str], None] | None = None
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, connection_ids: Sequence[str], data: str) -> DeliveryReport:
        delivered: list[str] = []
        gone: list[str] = []
        for connection_id in connection_ids:
            if connection_id in self.gone:
                gone.append(connection_id)
                if self.on_gone is not None:
                    self.on_gone(connection_id)
                continue
            with self.lock:
                self.sent.append((connection_id, json.loads(data)))
            delivered.append(connection_id)
        return DeliveryReport(delivered=tuple(delivered), gone=tuple(gone))

    def frames(self, connection_id: str, type_: str | None = None) -> list[dict[str, Any]]:
        """The frames posted to ``connection_id`` in order, only those of ``type_`` if given."""
        with self.lock:
            return [
                frame
                for cid, frame in self.sent
                if cid == connection_id and (type_ is None or frame["type"] == type_)
            ]


@contextmanager
def fresh_tables_and_queue(
    dynamodb: Any, sqs: Any, env: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Tables and a work queue for one test under environment ``env``; yields the queue URL.

    Every ``STREAMER_*`` variable of the surrounding environment is dropped for the test, and
    the tables and queue are deleted after it.
    """
    for name in list(os.environ):
        if name.startswith("STREAMER_"):
            monkeypatch.delenv(name)
    tables = create_tables(dynamodb, env)
    queue_url = sqs.create_queue(QueueName=f"streamer-{env}-work")["QueueUrl"]
    try:
        yield queue_url
    finally:
        for table in tables.values():
            dynamodb.delete_table(TableName=table)
        sqs.delete_queue(QueueUrl=queue_url)


@contextmanager
def moto_clients(*services: str) -> Iterator[dict[str, Any]]:
    """Clients of ``services`` on one in-process moto backend, which ends with the block.

    They ignore any endpoint URL in the environment: the end-to-end suites point those at a
    moto server, which these clients must never reach.
    """
    config = Config(ignore_configured_endpoint_urls=True)
    with mock_aws():
        yield {name: boto3.client(name, region_name=REGION, config=config) for name in services}
