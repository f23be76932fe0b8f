"""The rules the local stack copies from AWS, checked without sockets."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from streamer_infra.local.authorizer import decide
from streamer_infra.local.invoker import Invocation
from streamer_infra.local.sqs import sqs_event, succeeded_receipts
from streamer_infra.local.threads import DaemonPool

ARN = "arn:aws:execute-api:us-east-1:123456789012:api/local/$connect"


def _policy(effect: str, resource: Any = ARN, **extra: Any) -> Invocation:
    statement = {"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}
    result = {"principalId": "p", "policyDocument": {"Statement": [statement]}, **extra}
    return Invocation("r", result)


@pytest.mark.parametrize(
    ("invocation", "status"),
    [
        (_policy("Allow"), 200),
        (_policy("Allow", "arn:aws:execute-api:us-east-1:123456789012:api/local/*"), 200),
        (_policy("Allow", [ARN.replace("$connect", "other"), ARN]), 200),
        (_policy("Allow", ARN.replace("local", "prod")), 403),
        (_policy("Deny"), 403),
        (Invocation("r", None, "Exception", "Unauthorized"), 401),
        (Invocation("r", None, "RuntimeError", "boom"), 500),
        (Invocation("r", "not a policy"), 500),
        (Invocation("r", {"policyDocument": {}}), 500),
        (_policy("Allow", context={"ok": "yes", "n": 1, "flag": True}), 200),
        (_policy("Allow", context={"list": [1]}), 500),
    ],
)
def test_authorizer_decisions_follow_api_gateway(invocation: Invocation, status: int) -> None:
    assert decide(invocation, ARN).status == status


def test_deny_wins_over_allow() -> None:
    statements = [
        {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "*"},
        {"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": ARN},
    ]
    result = {"principalId": "p", "policyDocument": {"Statement": statements}}
    assert decide(Invocation("r", result), ARN).status == 403


MESSAGES = [{"MessageId": f"m{i}", "ReceiptHandle": f"h{i}", "Body": f"b{i}"} for i in range(3)]


def test_successful_invocation_deletes_everything() -> None:
    assert succeeded_receipts(MESSAGES, Invocation("r", None)) == MESSAGES
    assert succeeded_receipts(MESSAGES, Invocation("r", {"batchItemFailures": []})) == MESSAGES


def test_failed_invocation_deletes_nothing() -> None:
    assert succeeded_receipts(MESSAGES, Invocation("r", None, "RuntimeError", "x")) == []


def test_partial_failure_keeps_only_the_listed_records() -> None:
    result = {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    kept = succeeded_receipts(MESSAGES, Invocation("r", result))
    assert [m["MessageId"] for m in kept] == ["m0", "m2"]


@pytest.mark.parametrize("identifier", [None, "", "not-in-batch", 7])
def test_bad_item_identifier_fails_the_whole_batch(identifier: object) -> None:
    result = {"batchItemFailures": [{"itemIdentifier": identifier}]}
    assert succeeded_receipts(MESSAGES, Invocation("r", result)) == []


def test_sqs_event_uses_lambda_casing() -> None:
    message = {
        **MESSAGES[0],
        "MD5OfBody": "md5",
        "Attributes": {"ApproximateReceiveCount": "1"},
        "MessageAttributes": {"perm": {"StringValue": "a b", "DataType": "String"}},
    }
    (record,) = sqs_event([message], queue_arn="arn:q", region="us-east-1")["Records"]
    assert record["messageId"] == "m0"
    assert record["receiptHandle"] == "h0"
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == "arn:q"
    assert record["attributes"] == {"ApproximateReceiveCount": "1"}
    assert record["messageAttributes"]["perm"]["stringValue"] == "a b"
    assert record["messageAttributes"]["perm"]["dataType"] == "String"


def test_daemon_pool_bounds_its_threads_and_reports_errors() -> None:
    pool = DaemonPool(2, "rules-pool")
    gate = threading.Event()

    def work(index: int) -> int:
        gate.wait(10)
        return index

    futures = [pool.submit(work, i) for i in range(6)]
    workers = [t for t in threading.enumerate() if t.name.startswith("rules-pool-")]
    assert len(workers) == 2
    assert all(t.daemon for t in workers)
    gate.set()
    assert [f.result(10) for f in futures] == list(range(6))
    failing = pool.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing.result(10)
    pool.shutdown()
    with pytest.raises(RuntimeError):
        pool.submit(work, 99)
