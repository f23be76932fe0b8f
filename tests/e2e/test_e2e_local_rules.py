"""The rules the local stack copies from AWS, checked without sockets."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from streamer_infra.local._authorizer import decide
from streamer_infra.local._events import (
    ApiIdentity,
    ClientFacts,
    authorizer_event,
    connect_event,
    disconnect_event,
    message_event,
)
from streamer_infra.local._invoker import Invocation, LocalFunction, ThreadInvoker
from streamer_infra.local._sqs import sqs_event, succeeded_receipts
from streamer_infra.local._threads import DaemonPool

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


def _mutables(value: Any) -> list[int]:
    if isinstance(value, dict):
        return [id(value)] + [i for item in value.values() for i in _mutables(item)]
    if isinstance(value, list):
        return [id(value)] + [i for item in value for i in _mutables(item)]
    return []


@pytest.mark.parametrize(
    "build",
    [
        lambda api, facts: authorizer_event(api, facts, "req="),
        lambda api, facts: connect_event(api, facts, "req="),
        lambda api, facts: message_event(api, facts, route_key="echo", body='{"a": 1}'),
        lambda api, facts: message_event(api, facts, route_key="$default", body=b"\x00"),
        lambda api, facts: disconnect_event(api, facts, status_code=1000, reason="bye"),
    ],
)
def test_gateway_events_are_fresh_json_values_so_the_invoker_need_not_copy_them(
    build: Any,
) -> None:
    api = ApiIdentity("api123", "local", "127.0.0.1:8080")
    facts = ClientFacts(
        connection_id="conn=",
        connected_at=1,
        source_ip="127.0.0.1",
        user_agent="ua",
        headers=(("Host", "h"), ("X-Multi", "1"), ("X-Multi", "2")),
        query=(("token", "t"),),
        authorizer={"principalId": "p", "tenant_id": "t", "integrationLatency": 3},
    )
    first, second = build(api, facts), build(api, facts)
    assert json.loads(json.dumps(first)) == first
    # Nothing mutable is shared between two events, nor with the connection's facts.
    assert not set(_mutables(first)) & set(_mutables(second))
    first["requestContext"].get("authorizer", {})["principalId"] = "changed"
    assert facts.authorizer is not None
    assert facts.authorizer["principalId"] == "p"


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


def test_daemon_pool_reuses_the_worker_whose_completion_submits_the_next_job() -> None:
    # The invoker submits a client's next message as soon as it hears the last one is
    # done; the worker that answered must already count as free, or every sequential
    # message would start another thread.
    pool = DaemonPool(8, "chain-pool")
    names: set[str] = set()
    done = threading.Event()

    def chain(left: int) -> None:
        if left == 0:
            done.set()
            return
        registered = threading.Event()

        def job() -> None:
            registered.wait(10)  # so the callback below runs on the worker, at completion
            names.add(threading.current_thread().name)

        pool.submit(job).add_done_callback(lambda _: chain(left - 1))
        registered.set()

    chain(50)
    assert done.wait(10)
    assert len(names) == 1
    assert [t.name for t in threading.enumerate() if t.name.startswith("chain-pool-")] == [
        "chain-pool-1"
    ]
    pool.shutdown()


def _function(handler: Any, *, timeout: float, concurrency: int = 1) -> LocalFunction:
    return LocalFunction("rules", handler, timeout=timeout, concurrency=concurrency)


async def test_an_invocation_past_its_timeout_is_reported_as_lambda_does() -> None:
    invoker = ThreadInvoker(function_prefix="rules")
    release = threading.Event()
    try:
        slow = _function(lambda event, context: release.wait(10), timeout=0.2)
        outcome = await invoker.invoke(slow, {})
        assert outcome.error_type == "Sandbox.Timedout"
        assert outcome.error_message == "Task timed out after 0.20 seconds"
    finally:
        release.set()
        invoker.shutdown()


async def test_waiting_for_a_free_worker_is_not_charged_to_the_timeout() -> None:
    invoker = ThreadInvoker(function_prefix="rules")
    try:
        # One worker: the second invocation waits 0.3 s for the first, longer than its
        # 0.25 s timeout, then runs for 0.1 s of it.
        busy = _function(
            lambda event, context: time.sleep(0.1 if event["n"] else 0.3) or 1, timeout=0.25
        )
        first, second = await asyncio.gather(
            invoker.invoke(busy, {"n": 0}), invoker.invoke(busy, {"n": 1})
        )
        assert first.error_type == "Sandbox.Timedout"
        assert (second.ok, second.result) == (True, 1)
    finally:
        invoker.shutdown()


async def test_a_handler_that_exits_fails_its_invocation_only() -> None:
    invoker = ThreadInvoker(function_prefix="rules")
    try:
        exiting = _function(lambda event, context: sys.exit(3), timeout=5)
        outcome = await invoker.invoke(exiting, {})
        assert outcome.error_type == "SystemExit"
        fine = _function(lambda event, context: {"ok": event}, timeout=5)
        assert (await invoker.invoke(fine, {"a": 1})).result == {"ok": {"a": 1}}
    finally:
        invoker.shutdown()


def test_pinning_puts_every_thread_of_the_process_on_one_cpu() -> None:
    if len(getattr(os, "sched_getaffinity", lambda _pid: ())(0)) < 2:
        pytest.skip("needs a Linux machine with two CPUs or more")
    # In a child process: affinity is inherited, and this test run must keep its CPUs.
    script = (
        "import os, threading\n"
        "from streamer_infra.local._affinity import pin_to_one_cpu\n"
        "started = threading.Event(); stop = threading.Event()\n"
        "before = threading.Thread(target=lambda: (started.set(), stop.wait(5)))\n"
        "before.start(); started.wait(5)\n"
        "cpu = pin_to_one_cpu()\n"
        "after = []\n"
        "t = threading.Thread(target=lambda: after.append(os.sched_getaffinity(0)))\n"
        "t.start(); t.join()\n"
        "tids = [int(n) for n in os.listdir('/proc/self/task')]\n"
        "masks = {frozenset(os.sched_getaffinity(tid)) for tid in tids}\n"
        "stop.set(); before.join()\n"
        "import json; print(json.dumps([cpu, sorted(map(sorted, masks)), sorted(after[0])]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    cpu, masks, later = json.loads(done.stdout)
    assert isinstance(cpu, int)
    assert masks == [[cpu]]  # threads started before the call as well as the main one
    assert later == [cpu]  # and threads started after it
