"""CPU time the router spends per message, with storage on moto in the same process.

On Lambda, router CPU time is billed per message and bounds throughput per instance, so it is
measured as process CPU time, not wall time. moto runs in-process, so its own work (parsing
boto3's requests, evaluating conditions) is counted too; one conditional DynamoDB UpdateItem on
the same moto (what one rate-limit reservation costs) is measured alongside as the reference.

Nothing consumes the work queue here, and moto's SendMessage scans every message already queued
(its cost grows with queue depth), so the queue is drained between short batches, off the clock,
as the processor keeps it drained in the stack.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from benchmarks import aws, events
from benchmarks.harness import Result, RunConfig, Unavailable, module_exists

NAME = "router_cost"
TENANT, USER = "tenant-bench", "user-bench"
CONNECTION_ID = "routerBench0001="


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """EMF metric lines go to stdout on every invocation; keep them out of the table."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


def cpu_per_call_us(
    call: Callable[[int], object],
    count: int,
    first: int = 0,
    between: Callable[[], object] | None = None,
    batch: int = 25,
) -> float:
    """Process CPU time per call, in microseconds; `call` gets a running index from `first`.

    `between` runs off the clock after every `batch` calls (to reset state that would
    otherwise make later calls dearer than earlier ones).
    """
    spent = 0.0
    for offset in range(0, count, batch):
        start = time.process_time()
        for index in range(first + offset, first + min(offset + batch, count)):
            call(index)
        spent += time.process_time() - start
        if between is not None:
            between()
    return spent / count * 1e6


def _checked(handler: Callable[[dict[str, Any], Any], Any], expected: str) -> Callable[..., Any]:
    def invoke(event: dict[str, Any]) -> Any:
        response = handler(event, events.LambdaContext("streamer-router"))
        body = response.get("body", "") if isinstance(response, dict) else ""
        if f'"type":"{expected}"' not in body:
            raise RuntimeError(f"router answered {response!r}, expected a {expected} frame")
        return response

    return invoke


def _measure(config: RunConfig) -> list[Result]:
    from streamer_core.auth import Principal
    from streamer_core.storage import Connection, ConnectionStore

    resources = aws.provision()
    with _environment({**aws.BASE_ENV, **resources, "STREAMER_JWT_PUBLIC_KEY": ""}):
        with contextlib.suppress(ImportError):
            from streamer_handlers.deployment import reset_settings

            reset_settings()
        from streamer_handlers.functions import router

        client = aws.client("dynamodb")
        principal = Principal(USER, TENANT, frozenset({"reports:write"}), int(time.time()) + 7200)
        ConnectionStore(client, resources["STREAMER_CONNECTIONS_TABLE"]).put(
            Connection(
                connection_id=CONNECTION_ID,
                user_id=USER,
                tenant_id=TENANT,
                permissions=principal.permissions,
                connected_at=int(time.time() * 1000),
                expires_at=int(time.time()) + 7200,
                domain_name=events.DOMAIN,
                stage=events.STAGE,
            )
        )
        authorizer = {"principalId": USER, **principal.to_context()}

        def message(body: dict[str, Any]) -> dict[str, Any]:
            return events.message_event(
                CONNECTION_ID, json.dumps(body), authorizer, route_key=body["action"]
            )

        ping = _checked(router.handler, "pong")
        echo = _checked(router.handler, "response")
        submit = _checked(router.handler, "acknowledgment")
        ping_event = message({"action": "ping", "id": "bench-ping"})
        echo_event = message({"action": "echo", "id": "bench-echo", "payload": {"text": "hi"}})
        table = resources["STREAMER_CONNECTIONS_TABLE"]
        run_id = time.time_ns()

        def update_item(index: int) -> None:
            client.update_item(
                TableName=table,
                Key={"connection_id": {"S": CONNECTION_ID}},
                UpdateExpression="ADD rate_count :one",
                ConditionExpression="attribute_exists(connection_id)",
                ExpressionAttributeValues={":one": {"N": "1"}},
            )

        sqs = aws.client("sqs")

        queue_url = resources["STREAMER_QUEUE_URL"]

        def drain() -> None:
            while True:
                received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
                messages = received.get("Messages", [])
                if not messages:
                    return
                sqs.delete_message_batch(
                    QueueUrl=queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(messages)
                    ],
                )

        def submit_one(index: int) -> None:
            submit(
                message(
                    {
                        "action": "generate_report",
                        "id": f"bench-{run_id}-{index}",
                        "payload": {"steps": 3},
                    }
                )
            )

        cases: dict[str, Callable[[int], object]] = {
            "ping": lambda _: ping(ping_event),
            "sync echo": lambda _: echo(echo_event),
            "async submit": submit_one,
        }
        count = 50 if config.quick else 100
        repeat = config.repeats(full=5, quick=3)
        reference: list[float] = []
        samples: dict[str, list[float]] = {name: [] for name in cases}
        with _quiet_stdout():
            for call in (*cases.values(), update_item):
                call(-1)
            for rep in range(repeat):
                reference.append(cpu_per_call_us(update_item, count))
                for name, call in cases.items():
                    samples[name].append(
                        cpu_per_call_us(call, count, first=(rep + 1) * count, between=drain)
                    )
    return [Result(NAME, "1 DynamoDB UpdateItem (reference)", "us CPU", reference)] + [
        Result(
            NAME,
            f"{name} per message",
            "us CPU",
            values,
            baseline_name="UpdateItem",
            baseline_samples=reference,
        )
        for name, values in samples.items()
    ]


def run(config: RunConfig) -> list[Result]:
    if not module_exists("streamer_handlers.functions.router"):
        raise Unavailable("streamer_handlers.functions.router does not exist yet")
    from moto import mock_aws

    with mock_aws():
        return _measure(config)
