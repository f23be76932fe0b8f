"""Workers that crash or die mid-job, through the local stack's queue and event source mapping.

A request is never lost and never completed twice. When the processor's invocation crashes,
or is killed by its timeout without running another line, SQS redelivers the message after
its visibility timeout, and the next worker must either finish the job (once: the dead
worker's late result must not count) or fail it visibly with an ``error`` frame. A request
that kills every worker lands in the dead-letter queue, and its client still hears ``error``.

Time is scaled down so the suite stays short: the processor's function timeout is 2 s (900 s
on AWS), its safety margin before the timeout 0.5 s (10 s), the queue's visibility timeout
3 s (at least the function timeout, as Lambda requires) and three receives before the
dead-letter queue. Waits are bounded only to stop a broken test; nothing is timed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import streamer_reliability_app as reliability_app
from reliability_support import (
    TrackedFunction,
    deployed_functions,
    open_client,
    stack_config,
    wait_until,
)
from streamer_core.storage import RequestKey, RequestStore
from streamer_handlers.functions import processor
from streamer_infra.local import BackgroundStack, LocalStack

MAX_RECEIVES = 3


pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _fake_aws_credentials() -> None:
    """The running stack owns the AWS variables (its handlers call the embedded emulator)."""


@pytest.fixture(scope="module")
def tracked_processor() -> TrackedFunction:
    return TrackedFunction(processor.handler)


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, tracked_processor: TrackedFunction
) -> Iterator[LocalStack]:
    config = stack_config(
        tmp_path_factory.mktemp("worker-death"),
        visibility_timeout=3,
        max_receive_count=MAX_RECEIVES,
        sqs_concurrency=6,
        functions=deployed_functions(processor={"timeout": 2, "handler": tracked_processor}),
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("streamer_handlers._processor.jobs.PROCESSOR_MARGIN_SECONDS", 0.5)
        try:
            with BackgroundStack(config) as running:
                yield running
        finally:
            reliability_app.release_hung_workers()


@pytest.fixture
def release_workers(tracked_processor: TrackedFunction) -> Iterator[None]:
    """Hung workers of one test never outlive it (they would hold the processor's threads)."""
    try:
        yield
    finally:
        reliability_app.release_hung_workers()


def request_record(stack: LocalStack, user: str, request_id: str) -> Any:
    store = RequestStore(stack.aws_client("dynamodb"), stack.resources.tables["requests"])
    return store.get(RequestKey("reliability", user, request_id))


def dead_letters(stack: LocalStack) -> list[dict[str, Any]]:
    sqs = stack.aws_client("sqs")
    response = sqs.receive_message(
        QueueUrl=stack.resources.dead_letter_queue_url,
        MaxNumberOfMessages=10,
        VisibilityTimeout=0,
        AttributeNames=["All"],
    )
    return list(response.get("Messages", []))


def progress_seqs(frames: list[dict[str, Any]]) -> list[int]:
    return [f["seq"] for f in frames if f["type"] == "progress"]


async def test_a_crash_mid_job_is_retried_and_completes_exactly_once(
    stack: LocalStack, release_workers: None
) -> None:
    """The first worker raises; SQS redelivers; the second finishes; one ``complete``."""
    client = await open_client(stack, stack.token("crash-once", "reliability"), "crash-once")
    try:
        await client.send("crash_once", id="crash-once-1")
        end = await client.terminal("crash-once-1")
        await client.send("ping", id="settle-1")
        await client.reply("settle-1")
    finally:
        await client.close()

    frames = client.of("crash-once-1")
    assert end == {"type": "complete", "request_id": "crash-once-1", "result": {"attempt": 2}}
    assert [f["type"] for f in frames].count("complete") == 1
    assert not [f for f in frames if f["type"] == "error"]
    seqs = progress_seqs(frames)
    assert seqs == sorted(set(seqs))  # progress continues across attempts, never goes back
    assert reliability_app.ATTEMPTS["crash-once-1"] == 2
    assert reliability_app.FINISHED["crash-once-1"] == 1
    record = request_record(stack, "crash-once", "crash-once-1")
    assert (record.status.value, record.attempts, record.result) == ("COMPLETED", 2, end["result"])


async def test_a_killed_worker_is_replaced_and_its_late_result_never_counts(
    stack: LocalStack, tracked_processor: TrackedFunction, release_workers: None
) -> None:
    """The first worker hangs until its timeout kills it; the next one completes the job.

    The killed worker's thread is then let go and returns a result of its own. The request
    is already complete, so that late result must change nothing and reach no one.
    """
    client = await open_client(stack, stack.token("killed-once", "reliability"), "killed-once")
    try:
        await client.send("killed_once", id="killed-once-1")
        end = await client.terminal("killed-once-1")
        assert reliability_app.release_hung_workers() == 1
        await wait_until(lambda: tracked_processor.running == 0, "the late worker finished")
        assert reliability_app.FINISHED["killed-once-1"] == 2  # both bodies returned
        await client.send("status", {"request_id": "killed-once-1"}, id="status-1")
        status = await client.reply("status-1")
    finally:
        await client.close()

    frames = client.of("killed-once-1")
    assert end == {"type": "complete", "request_id": "killed-once-1", "result": {"attempt": 2}}
    assert [f["type"] for f in frames].count("complete") == 1
    assert not [f for f in frames if f["type"] == "error"]
    assert status["snapshot"]["status"] == "COMPLETED"
    assert status["snapshot"]["result"] == {"attempt": 2}
    record = request_record(stack, "killed-once", "killed-once-1")
    assert (record.status.value, record.result) == ("COMPLETED", {"attempt": 2})


async def test_a_request_crashing_every_worker_fails_visibly_on_the_last_attempt(
    stack: LocalStack, release_workers: None
) -> None:
    """A poison request is tried as often as the queue allows, then failed with ``error``."""
    client = await open_client(stack, stack.token("crash-always", "reliability"), "poison")
    try:
        await client.send("crash_always", id="poison-1")
        end = await client.terminal("poison-1")
        await client.send("status", {"request_id": "poison-1"}, id="status-2")
        status = await client.reply("status-2")
    finally:
        await client.close()

    assert (end["type"], end["code"]) == ("error", "INTERNAL_ERROR")
    assert "crashed" not in end["message"]  # internals stay in the logs
    assert [f["type"] for f in client.of("poison-1")].count("error") == 1
    assert reliability_app.ATTEMPTS["poison-1"] == MAX_RECEIVES
    assert status["snapshot"]["status"] == "FAILED"
    assert status["snapshot"]["error"]["code"] == "INTERNAL_ERROR"


async def test_a_request_killing_every_worker_lands_in_the_dead_letter_queue_and_errors(
    stack: LocalStack, release_workers: None
) -> None:
    """Every worker hangs until killed, so no processor code runs after the action started.

    SQS gives up after the receive count and moves the message to the dead-letter queue.
    The client must still get ``error`` and the request must end FAILED: a request left
    PROCESSING forever, with a client waiting on it, is a lost request.
    """
    client = await open_client(stack, stack.token("killed-always", "reliability"), "dead")
    try:
        await client.send("killed_always", id="dead-1")
        assert (await client.reply("dead-1"))["type"] == "acknowledgment"

        def dead_lettered() -> bool:
            return any(
                RequestKey.from_json(m["Body"]).request_id == "dead-1" for m in dead_letters(stack)
            )

        await wait_until(dead_lettered, "the message reached the dead-letter queue", guard=40)
        assert reliability_app.ATTEMPTS["dead-1"] == MAX_RECEIVES
        # Nothing the test does from here on can end the request: the workers stay hung.
        end = await client.terminal("dead-1", guard=20)
    finally:
        await client.close()

    assert (end["type"], end["request_id"]) == ("error", "dead-1")
    record = request_record(stack, "killed-always", "dead-1")
    assert record.status.value == "FAILED"


def test_the_stack_is_configured_as_the_docstring_says(stack: LocalStack) -> None:
    """The scaled-down timings are what make the tests above mean what they claim."""
    sqs = stack.aws_client("sqs")
    attributes = sqs.get_queue_attributes(
        QueueUrl=stack.resources.queue_url, AttributeNames=["All"]
    )["Attributes"]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert int(attributes["VisibilityTimeout"]) >= 2  # at least the function timeout
    assert int(redrive["maxReceiveCount"]) == MAX_RECEIVES
    assert redrive["deadLetterTargetArn"] == stack.resources.dead_letter_queue_arn
