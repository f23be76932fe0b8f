"""A burst larger than a function's concurrency: queued invocations are not failed ones.

On AWS a Lambda invocation's timeout counts from when it starts running. An invocation
that cannot start because every instance is busy is throttled: the client is told, and the
function does not run. What must never happen is both: a client told its request failed
while the request runs anyway (a client that retries it then runs it twice). Here the
router may run two invocations at a time, each for at most 2 s, and one client sends thirty
requests of 0.2 s each at once: the last ones wait about three seconds for a thread.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import streamer_reliability_app as reliability_app
from reliability_support import deployed_functions, open_client, stack_config
from streamer_infra.local import BackgroundStack, LocalStack

pytestmark = pytest.mark.slow

BURST = 30


@pytest.fixture(autouse=True)
def _fake_aws_credentials() -> None:
    """The running stack owns the AWS variables (its handlers call the embedded emulator)."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    config = stack_config(
        tmp_path_factory.mktemp("burst"),
        function_concurrency=2,
        functions=deployed_functions(router={"timeout": 2}),
    )
    with BackgroundStack(config) as running:
        yield running


async def test_a_request_told_it_failed_never_runs_and_one_that_ran_is_answered(
    stack: LocalStack,
) -> None:
    """Each request: its response (ran once), or a refusal (never ran); never TIMEOUT.

    TIMEOUT here would mean the time an invocation waited for a free thread was charged to
    its own timeout, which is not how Lambda counts.
    """
    client = await open_client(stack, stack.token("burst", "reliability"), "burst")
    try:
        for number in range(BURST):
            await client.send("slow_echo", {"n": number}, id=f"burst-{number}")
        await client.wait_for(lambda: len(client.frames) >= BURST, "an answer to every request")
        await client.send("ping", id="burst-last")
        await client.wait_for(
            lambda: any(f.get("request_id") == "burst-last" for f in client.frames), "pong"
        )
    finally:
        await client.close()

    outcomes = []
    for number in range(BURST):
        request_id = f"burst-{number}"
        answers = [
            f.get("code") or f["type"] for f in client.frames if f.get("request_id") == request_id
        ]
        outcomes.append((request_id, answers, reliability_app.ATTEMPTS[request_id]))
    gateway_errors = [f for f in client.frames if "type" not in f]
    # Each action needs 0.2 s of a 2 s invocation: only time spent waiting for a thread,
    # wrongly charged to the invocation, could make it overrun.
    timed_out = [o for o in outcomes if "TIMEOUT" in o[1]]
    assert not timed_out, f"{len(timed_out)} answered TIMEOUT: {timed_out[:5]}"
    for request_id, answers, started in outcomes:
        if answers == ["response"]:
            assert started == 1, (request_id, answers, started)
        else:  # refused (throttled): then it must not have run
            assert started == 0, (request_id, answers, started, len(gateway_errors))
