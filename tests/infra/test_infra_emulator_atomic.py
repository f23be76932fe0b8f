"""Every DynamoDB request the embedded emulator serves happens at once, as on the service.

The emulator answers on several threads. These tests race real boto3 requests against it:
conditional writes of one key (exactly one may win), and readers polling items while a
writer changes several attributes, or several items, in one request (no reader may see
part of it).

Left alone, threads are preempted inside moto's handling of a request only now and then, so
a race shows in some runs and hides in others. While these tests run, moto waits a moment
before storing each attribute of an item, which lets other threads run at exactly the
points where an unprotected request can be overtaken: between a condition check and its
write, and between the attributes or items of one request. Without atomic requests every
test here then fails on every run; with them, the wait happens while the request holds the
lock and overtakes nothing.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from streamer_infra.local._atomic_dynamodb import (
    atomic_dynamodb_installed,
    install_atomic_dynamodb,
    uninstall_atomic_dynamodb,
)
from streamer_infra.local._emulator import AwsEmulator, shared_emulator

THREADS = 8
ROUNDS = 10
WRITES = 60
READERS = 2
PAUSE = 0.001
"""Seconds moto waits before storing an attribute: any wait releases the GIL."""


@pytest.fixture(scope="module")
def endpoint() -> str:
    return shared_emulator().endpoint_url


@pytest.fixture
def client(endpoint: str) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, max_pool_connections=THREADS * 2),
    )


@pytest.fixture
def table(client: Any) -> Iterator[str]:
    name = f"atomic-{uuid.uuid4().hex[:12]}"
    client.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )
    yield name
    client.delete_table(TableName=name)


@pytest.fixture(autouse=True)
def _writes_that_let_others_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.dynamodb.models.dynamo_type import LimitedSizeDict

    store = LimitedSizeDict.__setitem__

    def paused(self: Any, key: str, value: Any) -> None:
        time.sleep(PAUSE)
        store(self, key, value)

    monkeypatch.setattr(LimitedSizeDict, "__setitem__", paused)


def _conditional_failure(error: ClientError) -> bool:
    code = error.response["Error"]["Code"]
    return code in ("ConditionalCheckFailedException", "TransactionCanceledException")


def _race(attempt: Callable[[int], None]) -> list[int]:
    """Run ``attempt(contender)`` on THREADS threads released together; answer the winners."""
    start = threading.Barrier(THREADS)
    winners: list[int] = []
    errors: list[BaseException] = []

    def contend(contender: int) -> None:
        start.wait()
        try:
            attempt(contender)
        except ClientError as error:
            if not _conditional_failure(error):
                errors.append(error)
            return
        except BaseException as error:  # surfaced below, not lost on a thread
            errors.append(error)
            return
        winners.append(contender)

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return winners


def test_conditional_creates_of_one_key_have_exactly_one_winner(client: Any, table: str) -> None:
    broken: dict[int, list[int]] = {}
    for round_ in range(ROUNDS):
        key = {"S": f"request-{round_}"}

        def create(contender: int, key: dict[str, str] = key) -> None:
            client.put_item(
                TableName=table,
                Item={"pk": key, "owner": {"N": str(contender)}},
                ConditionExpression="attribute_not_exists(pk)",
            )

        winners = _race(create)
        stored = client.get_item(TableName=table, Key={"pk": key}, ConsistentRead=True)["Item"]
        if len(winners) != 1 or stored["owner"]["N"] != str(winners[0]):
            broken[round_] = winners
    assert broken == {}


def test_conditional_claims_of_one_job_have_exactly_one_winner(client: Any, table: str) -> None:
    broken: dict[int, list[int]] = {}
    for round_ in range(ROUNDS):
        key = {"pk": {"S": f"job-{round_}"}}
        client.put_item(TableName=table, Item={**key, "status": {"S": "QUEUED"}})

        def claim(contender: int, key: dict[str, Any] = key) -> None:
            client.update_item(
                TableName=table,
                Key=key,
                UpdateExpression="SET #s = :processing, worker = :me",
                ConditionExpression="#s = :queued",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":processing": {"S": "PROCESSING"},
                    ":queued": {"S": "QUEUED"},
                    ":me": {"N": str(contender)},
                },
            )

        winners = _race(claim)
        stored = client.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]
        if len(winners) != 1 or stored["worker"]["N"] != str(winners[0]):
            broken[round_] = winners
    assert broken == {}


def test_conditional_transactions_on_one_key_have_exactly_one_winner(
    client: Any, table: str
) -> None:
    broken: dict[int, list[int]] = {}
    for round_ in range(ROUNDS):
        key = {"S": f"txn-{round_}"}

        def create(contender: int, key: dict[str, str] = key) -> None:
            client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": table,
                            "Item": {"pk": key, "owner": {"N": str(contender)}},
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    }
                ]
            )

        winners = _race(create)
        if len(winners) != 1:
            broken[round_] = winners
    assert broken == {}


def _poll_while(
    writing: Callable[[], None], read: Callable[[], str | None], readers: int = READERS
) -> list[str]:
    """Run ``writing`` while ``readers`` threads call ``read``; answer what they found wrong."""
    done = threading.Event()
    found: list[str] = []
    errors: list[BaseException] = []

    def poll() -> None:
        try:
            while not done.is_set():
                problem = read()
                if problem is not None:
                    found.append(problem)
        except BaseException as error:  # surfaced below, not lost on a thread
            errors.append(error)

    threads = [threading.Thread(target=poll) for _ in range(readers)]
    for thread in threads:
        thread.start()
    try:
        writing()
    finally:
        done.set()
        for thread in threads:
            thread.join()
    assert errors == []
    return found


def test_a_reader_never_sees_half_an_update_item(client: Any, table: str) -> None:
    key = {"pk": {"S": "job"}}
    client.put_item(TableName=table, Item={**key, "status": {"S": "QUEUED"}, "seq": {"N": "0"}})

    def write() -> None:
        for seq in range(1, WRITES + 1):
            # Completion sets the status and the result together, as the processor does...
            client.update_item(
                TableName=table,
                Key=key,
                UpdateExpression="SET #s = :done, #r = :result, seq = :seq",
                ExpressionAttributeNames={"#s": "status", "#r": "result"},
                ExpressionAttributeValues={
                    ":done": {"S": "COMPLETED"},
                    ":result": {"S": f"result-{seq}"},
                    ":seq": {"N": str(seq)},
                },
            )
            # ...and requeueing takes both back in one request.
            client.update_item(
                TableName=table,
                Key=key,
                UpdateExpression="SET #s = :queued REMOVE #r",
                ExpressionAttributeNames={"#s": "status", "#r": "result"},
                ExpressionAttributeValues={":queued": {"S": "QUEUED"}},
            )

    def read() -> str | None:
        item = client.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]
        completed = item["status"]["S"] == "COMPLETED"
        result = item.get("result", {}).get("S")
        if completed != (result is not None):
            return f"status {item['status']['S']} with result {result}"
        if completed and result != f"result-{item['seq']['N']}":
            return f"seq {item['seq']['N']} with {result}"
        return None

    assert _poll_while(write, read) == []


def test_a_reader_never_sees_half_a_transaction(client: Any, table: str) -> None:
    keys = [{"pk": {"S": "left"}}, {"pk": {"S": "right"}}]

    def put_both(version: int) -> None:
        client.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table, "Item": {**key, "version": {"N": str(version)}}}}
                for key in keys
            ]
        )

    put_both(0)

    def write() -> None:
        for version in range(1, WRITES + 1):
            put_both(version)

    def read() -> str | None:
        response = client.transact_get_items(
            TransactItems=[{"Get": {"TableName": table, "Key": key}} for key in keys]
        )
        versions = [entry["Item"]["version"]["N"] for entry in response["Responses"]]
        return None if versions[0] == versions[1] else f"versions {versions}"

    assert _poll_while(write, read) == []


def test_the_lock_is_in_place_while_an_emulator_runs_and_undone_after() -> None:
    before = atomic_dynamodb_installed()
    emulator = AwsEmulator()
    emulator.start()
    try:
        assert atomic_dynamodb_installed()
    finally:
        emulator.stop()
    assert atomic_dynamodb_installed() == before


def test_installing_is_counted_and_undone_to_moto_s_own_method() -> None:
    from moto.dynamodb.responses import DynamoHandler

    before = atomic_dynamodb_installed()
    initial = DynamoHandler.__dict__["call_action"]
    assert install_atomic_dynamodb()
    assert install_atomic_dynamodb()
    wrapped = DynamoHandler.__dict__["call_action"]
    assert (wrapped is initial) == before
    uninstall_atomic_dynamodb()
    assert atomic_dynamodb_installed()
    assert DynamoHandler.__dict__["call_action"] is wrapped
    uninstall_atomic_dynamodb()
    assert atomic_dynamodb_installed() == before
    assert DynamoHandler.__dict__["call_action"] is initial
