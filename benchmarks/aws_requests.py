"""AWS requests per operation, each next to its target, and the price of each operation.

Every operation runs through the real handler functions against the emulator (moto's
server, in a process of its own with a management API that answers 200 to every post),
configured as a deployment is: boto3 clients on the endpoint, the management-API sender
posting over HTTP. botocore's hooks count each request by service and API
(:mod:`benchmarks.request_counter`), the benchmark counts the Lambda invocations it makes,
and it plays the SQS event source mapping itself, whose receives and deletes are counted
apart from the handlers'. Counts are exact and machine-independent.

The handlers' clock is moved to the start of a rate-limit window before the operations
whose count depends on it (a thousand echoes, a refused message), so a run never straddles
two windows. Handler CPU time is this process's CPU (the emulator and the management API
run elsewhere), per operation: it prices the operations together with the assumed round
trips of :mod:`benchmarks.aws_prices`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from benchmarks import aws
from benchmarks import aws_prices as prices
from benchmarks.harness import Result, RunConfig, Target, Unavailable, module_exists
from benchmarks.request_counter import MANAGEMENT, Counts, RequestCounter

NAME = "aws_requests"
TENANT, USER = "tenant-bench", "user-bench"
RATE_LIMIT = 10_000
"""Per connection and minute, for the operations that send many messages: 1,000 echoes in
one window need a limit above 1,000 (the deployment default is 100)."""
REFUSING_LIMIT = 10
PROGRESS_STEPS = 10
SUBSCRIPTIONS_ON_DISCONNECT = 10
FAN_OUTS = (1, 100, 10_000)
PAGE = 1000  # streamer_core.storage.subscriptions.FULL_READ_PAGE_SIZE
DIRECT_MAX = 1000  # the fan-out's defaults (streamer_handlers._delivery.sharding)
SHARD_SIZE = 100
SENDS_PER_SECOND = 50.0
"""Posts per second per processor invocation: what prices a sharded fan-out's Lambda time.
The run itself lifts the pacing (counts do not depend on it)."""
SENDER_THREADS = 32  # ManagementSender's pool
HEARTBEAT_S = 240.0  # streamer_client's DEFAULT_HEARTBEAT_INTERVAL
RECONNECT_S = 2 * 3600.0 - 300.0  # streamer_client's DEFAULT_MAX_CONNECTION_AGE
MONTH_MINUTES = 30 * 24 * 60
MEMORY_SIZES = (128, 512, 1024, 1769, 3008)

BEFORE = {
    "$connect": 1,
    "$disconnect, 10 subscriptions": 3,
    "async submit to acknowledgment": 3,
    "each progress: DynamoDB": 2,
    "final complete: DynamoDB": 2,
    "status after reconnect (running)": 2,
    "status after reconnect (finished)": 3,
    "subscribe": 2,
    "refused message (RATE_LIMITED)": 2,
}
"""What each operation cost before requests kept their followers (counted the same way),
for the notes of the table."""

AUTHORIZER_CPU_MS: list[float] = []
COUNTER = RequestCounter()
"""Module-wide: the benchmark's own action reads it between its progress reports."""


def _app() -> Any:
    from streamer_handlers import ProgressReporter, Request, Streamer

    app = Streamer()

    @app.action("echo")
    def echo(request: Request) -> Any:
        return request.payload

    @app.action("bench_job", asynchronous=True)
    def bench_job(request: Request, progress: ProgressReporter) -> Any:
        """Reports PROGRESS_STEPS times, counting what each report costs."""
        for step in range(1, PROGRESS_STEPS + 1):
            time.sleep(0.002)  # above the reporter's interval: no report is held back
            before = COUNTER.snapshot()
            progress.report(step * 100 / PROGRESS_STEPS, f"step {step}")
            JOB_TRACE.progress.append(COUNTER.snapshot() - before)
        JOB_TRACE.returned = COUNTER.snapshot()
        return {"steps": PROGRESS_STEPS}

    return app


@dataclass
class _JobTrace:
    progress: list[Counts] = field(default_factory=list)
    returned: Counts | None = None


JOB_TRACE = _JobTrace()


def __getattr__(name: str) -> Any:
    """``app`` (STREAMER_APP=benchmarks.aws_requests:app) is built when the handlers ask."""
    if name == "app":
        globals()["app"] = built = _app()
        return built
    raise AttributeError(name)


# ------------------------------------------------------------------ emulator process


class _Sink:
    """A management API that answers 200 to every post, over keep-alive HTTP/1.1."""

    @staticmethod
    def start() -> Any:
        import http.server

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


async def _serve() -> None:
    """Child process: moto's server and the management sink, until stdin closes."""
    from benchmarks.control import serve

    @contextlib.asynccontextmanager
    async def start() -> Any:
        with aws.moto_server() as endpoint:
            sink = _Sink.start()
            try:
                yield {"aws": endpoint, "sink": f"http://127.0.0.1:{sink.server_address[1]}/b"}
            finally:
                sink.shutdown()

    await serve(start, {})


# ------------------------------------------------------------------ driving the handlers


class WindowClock:
    """Wall-clock time, shifted on request to just after the start of a rate-limit window."""

    def __init__(self) -> None:
        self._offset = 0.0

    def __call__(self) -> float:
        return time.time() + self._offset

    def start_window(self, seconds: int = 60) -> None:
        now = self()
        self._offset += math.ceil(now / seconds) * seconds + 0.25 - now


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


@dataclass
class Op:
    """One operation's counts and the handler CPU it took, per occurrence."""

    name: str
    counts: Counts
    cpu_ms: float
    per: int = 1
    target: float | None = None
    note: str = ""


class Driver:
    """Calls the four handlers as API Gateway, SQS and Lambda would."""

    def __init__(
        self, runtime: Any, issuer: Any, queue_arn: str, queue_url: str, esm_sqs: Any
    ) -> None:
        from streamer_infra.local import _events as local_events

        from benchmarks import events

        self.runtime = runtime
        self.issuer = issuer
        self.queue_arn = queue_arn
        self.queue_url = queue_url
        self.local_events = local_events
        self.api = events.API
        self.authorizers: dict[str, dict[str, Any]] = {}
        self.esm = RequestCounter()
        self.esm_sqs = esm_sqs
        """Lambda's poller: its requests are counted apart from the handlers'."""
        self.esm.watch(self.esm_sqs)
        self.probe: Any = None
        """An SQS client nobody counts, to see whether the queue is empty."""
        self.cpu = 0.0
        self.authorizer_cpu = 0.0

    def _client(self, connection_id: str, **kwargs: Any) -> Any:
        return self.local_events.ClientFacts(
            connection_id=connection_id,
            connected_at=int(self.runtime.clock() * 1000),
            source_ip="127.0.0.1",
            user_agent="benchmarks",
            **kwargs,
        )

    def _invoke(self, function: str, handler: Callable[..., Any], event: Any) -> Any:
        from benchmarks.events import LambdaContext

        COUNTER.invoked(function)
        started = time.process_time()
        try:
            return handler(event, LambdaContext(f"streamer-bench-{function}"))
        finally:
            self.cpu += time.process_time() - started

    def connect(self, user: str = USER) -> str:
        from streamer_handlers.functions import connect

        connection_id = self.local_events.aws_style_id()
        token = self.issuer.issue(user, TENANT, ["reports:write"])
        headers = (("Authorization", f"Bearer {token}"),)
        request_id = self.local_events.aws_style_id()
        cpu = self.cpu
        policy = self._invoke(
            "connect",
            connect.handler,
            self.local_events.authorizer_event(
                self.api, self._client(connection_id, headers=headers), request_id
            ),
        )
        self.authorizer_cpu += self.cpu - cpu
        authorizer = {"principalId": policy["principalId"], **policy["context"]}
        response = self._invoke(
            "connect",
            connect.handler,
            self.local_events.connect_event(
                self.api,
                self._client(connection_id, headers=headers, authorizer=authorizer),
                request_id,
            ),
        )
        if response.get("statusCode") != 200:
            raise RuntimeError(f"$connect answered {response}")
        self.authorizers[connection_id] = authorizer
        return connection_id

    def send(self, connection_id: str, frame: dict[str, Any]) -> dict[str, Any]:
        from streamer_handlers.functions import router

        event = self.local_events.message_event(
            self.api,
            self._client(connection_id, authorizer=self.authorizers[connection_id]),
            route_key=str(frame.get("action", "$default")),
            body=json.dumps(frame, separators=(",", ":")),
        )
        response = self._invoke("router", router.handler, event)
        reply: dict[str, Any] = json.loads(response["body"])
        return reply

    def disconnect(self, connection_id: str) -> None:
        from streamer_handlers.functions import disconnect

        event = self.local_events.disconnect_event(
            self.api,
            self._client(connection_id, authorizer=self.authorizers.pop(connection_id)),
            status_code=1000,
            reason="Client-side close frame status not set",
        )
        self._invoke("disconnect", disconnect.handler, event)

    def queued(self) -> int:
        """Messages on the work queue, visible or not (not counted: the benchmark's own)."""
        attributes = self.probe.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(value) for value in attributes.values())

    def run_queue(self, batch_size: int = 1) -> dict[str, Any]:
        """One poll of the event source mapping: receive, invoke, delete what succeeded.

        Jobs are received one per batch: each job's counts are its own (and SQS's the most
        per job). Fan-out shards come ten to a batch, as the deployment's mapping takes them.
        """
        from streamer_handlers.functions import processor
        from streamer_infra.local import _sqs as local_sqs

        received = self.esm_sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=batch_size,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = received.get("Messages", [])
        if not messages:
            raise RuntimeError("the work queue is empty")
        event = local_sqs.sqs_event(messages, queue_arn=self.queue_arn, region=aws.REGION)
        response: dict[str, Any] = self._invoke("processor", processor.handler, event)
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            self.esm_sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)
                ],
            )
        return response


@contextlib.contextmanager
def _measured(driver: Driver) -> Iterator[Callable[[], tuple[Counts, float]]]:
    """Counts and handler CPU (ms) of the block, read through the yielded function."""
    before, cpu = COUNTER.snapshot(), driver.cpu
    result: list[tuple[Counts, float]] = []
    yield lambda: result[0]
    result.append((COUNTER.snapshot() - before, (driver.cpu - cpu) * 1000))


def _per(counts: Counts, n: int) -> Counts:
    """Counts of ``n`` identical operations, per operation (they must divide exactly)."""
    requests = {}
    for call, total in counts.requests.items():
        if total % n:
            raise RuntimeError(f"{call} made {total} times in {n} operations: not per operation")
        requests[call] = total // n
    invocations = {}
    for function, total in counts.invocations.items():
        if total % n:
            raise RuntimeError(f"{function} invoked {total} times in {n} operations")
        invocations[function] = total // n
    return Counts(requests, invocations)


def _operations(driver: Driver, clock: WindowClock, config: RunConfig) -> list[Op]:
    ops: list[Op] = []
    repeat = 10 if config.quick else 40

    # $connect: the authorizer, then the route.
    with _measured(driver) as read:
        connections = [driver.connect() for _ in range(repeat)]
    counts, cpu = read()
    ops.append(
        Op(
            "$connect",
            _per(counts, repeat),
            cpu / repeat,
            target=1,
            note=f"the connection record; authorizer {driver.authorizer_cpu * 1000 / repeat:.2f}"
            " ms CPU of it",
        )
    )
    AUTHORIZER_CPU_MS.append(driver.authorizer_cpu * 1000 / repeat)

    # A warm connection: its first rate-limit chunk is reserved (counted with echo).
    clock.start_window()
    main = connections[0]
    assert driver.send(main, {"action": "ping"})["type"] == "pong"

    # 1,000 echoes on one connection, in one window.
    clock.start_window()
    echoer = connections[1]
    with _measured(driver) as read:
        for index in range(1000):
            reply = driver.send(echoer, {"action": "echo", "id": f"e{index}", "payload": {}})
            if reply.get("type") != "response":
                raise RuntimeError(f"echo answered {reply}")
    counts, cpu = read()
    ops.append(
        Op(
            "sync echo (1,000 messages)",
            counts,
            cpu / 1000,
            per=1000,
            target=_reservations(1000, RATE_LIMIT),
            note=f"rate limit {RATE_LIMIT}/min: only the reservations, of 10, 20, 40 ... units",
        )
    )

    # Async submit to acknowledgment, on warm connections.
    submitters = connections[2 : 2 + repeat // 4]
    for connection in submitters:
        driver.send(connection, {"action": "ping"})
    with _measured(driver) as read:
        for index, connection in enumerate(submitters):
            reply = driver.send(connection, {"action": "bench_job", "id": f"job-{index}"})
            if reply.get("type") != "acknowledgment":
                raise RuntimeError(f"submit answered {reply}")
    counts, cpu = read()
    ops.append(
        Op(
            "async submit to acknowledgment",
            _per(counts, len(submitters)),
            cpu / len(submitters),
            target=2,
        )
    )

    # The jobs, one batch of one at a time: claim, progress, complete.
    job_counts: list[Counts] = []
    job_cpu = 0.0
    progress: list[Counts] = []
    final: list[Counts] = []
    esm_before = driver.esm.snapshot()
    for _ in submitters:
        JOB_TRACE.progress.clear()
        with _measured(driver) as read:
            response = driver.run_queue()
        if response.get("batchItemFailures"):
            raise RuntimeError(f"processor answered {response}")
        counts, cpu = read()
        job_counts.append(counts)
        job_cpu += cpu
        progress.extend(JOB_TRACE.progress)
        assert JOB_TRACE.returned is not None
        final.append(COUNTER.snapshot() - JOB_TRACE.returned)
    esm = _per(driver.esm.snapshot() - esm_before, len(submitters))
    each_progress = _per(_sum(progress), len(progress))
    each_final = _per(_sum(final), len(final))
    whole_job = _per(_sum(job_counts), len(job_counts))
    ops.append(Op("each progress", each_progress, 0.0, target=1, note="one follower"))
    ops.append(Op("final complete", each_final, 0.0, target=1, note="one follower"))
    ops.append(
        Op(
            f"job of {PROGRESS_STEPS} progress updates (processor)",
            whole_job,
            job_cpu / len(submitters),
            note="claim, progress, completion",
        )
    )
    ops.append(Op("event source mapping, per job", esm, 0.0, note="batches of one job"))

    # status after a reconnect: of a running request, then of a finished one. The ping
    # reserves a chunk of ten, which covers the eight of each.
    clock.start_window()
    driver.send(main, {"action": "bench_job", "id": "watched"})
    reconnected = driver.connect()
    driver.send(reconnected, {"action": "ping"})
    asks = 4
    for request_id, status, name in (
        ("watched", "QUEUED", "status after reconnect (running)"),
        ("job-0", "COMPLETED", "status after reconnect (finished)"),
    ):
        with _measured(driver) as read:
            for _ in range(asks):
                frame = {"action": "status", "payload": {"request_id": request_id}}
                reply = driver.send(reconnected, frame)
                if reply.get("snapshot", {}).get("status") != status:
                    raise RuntimeError(f"status answered {reply}")
        counts, cpu = read()
        ops.append(Op(name, _per(counts, asks), cpu / asks, target=1))

    # subscribe, then $disconnect of a connection holding ten subscriptions. On a new
    # connection the ping reserves a chunk of ten (rate-limit reservations are counted with
    # echo): it covers nine subscribes, the tenth is made unmeasured.
    main = driver.connect()
    driver.send(main, {"action": "ping"})
    measured_subscribes = SUBSCRIPTIONS_ON_DISCONNECT - 1
    topics = [f"t{index}" for index in range(SUBSCRIPTIONS_ON_DISCONNECT)]
    with _measured(driver) as read:
        for topic in topics[:measured_subscribes]:
            reply = driver.send(main, {"action": "subscribe", "payload": {"topic": topic}})
            if reply.get("type") != "subscribed":
                raise RuntimeError(f"subscribe answered {reply}")
    counts, cpu = read()
    driver.send(main, {"action": "subscribe", "payload": {"topic": topics[-1]}})
    ops.append(
        Op(
            "subscribe",
            _per(counts, measured_subscribes),
            cpu / measured_subscribes,
            target=2,
            note="the per-connection cap needs a count: a query, then the write",
        )
    )
    with _measured(driver) as read:
        driver.disconnect(main)
    counts, cpu = read()
    ops.append(
        Op(
            f"$disconnect, {SUBSCRIPTIONS_ON_DISCONNECT} subscriptions",
            counts,
            cpu,
            target=3,
            note="find the subscriptions, delete them in one batch, delete the connection",
        )
    )

    # A refused message: the first one finds the window spent, the later ones know it.
    ops.extend(_refusals(driver, clock))
    ops.extend(_fan_outs(driver, config))
    return ops


def _reservations(messages: int, limit: int) -> int:
    """Rate-limit reservations one container makes for ``messages`` in one window."""
    from streamer_handlers._router.rate_limit import default_chunk, largest_chunk

    chunk, reserved, count = default_chunk(limit), 0, 0
    while reserved < messages:
        reserved += chunk
        count += 1
        chunk = min(chunk * 2, largest_chunk(limit))
    return count


def _sum(counts: list[Counts]) -> Counts:
    total = Counts()
    for item in counts:
        total = total + item
    return total


def _refusals(driver: Driver, clock: WindowClock) -> list[Op]:
    import dataclasses

    from streamer_handlers.deployment import Runtime, set_runtime

    runtime = driver.runtime
    refusing = Runtime(
        dataclasses.replace(runtime.settings, rate_limit=REFUSING_LIMIT),
        dynamodb=runtime.dynamodb,
        sqs=runtime.sqs,
        sender=runtime.sender,
        clock=runtime.clock,
    )
    set_runtime(refusing)
    driver.runtime = refusing
    try:
        clock.start_window()
        connection = driver.connect()
        for _ in range(REFUSING_LIMIT):
            driver.send(connection, {"action": "ping"})
        with _measured(driver) as read:
            reply = driver.send(connection, {"action": "ping", "id": "first"})
        first, first_cpu = read()
        if reply.get("code") != "RATE_LIMITED":
            raise RuntimeError(f"expected RATE_LIMITED, got {reply}")
        n = 100
        with _measured(driver) as read:
            for _ in range(n):
                driver.send(connection, {"action": "ping"})
        later, later_cpu = read()
    finally:
        set_runtime(runtime)
        driver.runtime = runtime
    return [
        Op(
            "refused message (RATE_LIMITED)",
            _per(later, n),
            later_cpu / n,
            target=0,
            note="once the container knows the window is spent",
        ),
        Op(
            "first refused message of a window",
            first,
            first_cpu,
            target=1,
            note="the refused reservation says why: no read",
        ),
    ]


def _fan_outs(driver: Driver, config: RunConfig) -> list[Op]:
    """Publishes to 1, 100 and 10,000 subscribers. The first two are sent by the publisher;
    10,000 is above the direct limit: the publisher queues shards of 100, which the
    processor then sends, ten shards to an invocation."""
    from streamer_handlers import publish

    ops = []
    setup = aws.client("dynamodb", os.environ["AWS_ENDPOINT_URL"])
    table = os.environ["STREAMER_SUBSCRIPTIONS_TABLE"]
    expires = int(time.time()) + 7200
    for n in FAN_OUTS:
        topic = f"wide-{n}"
        items = [
            {
                "PutRequest": {
                    "Item": {
                        "connection_id": {"S": f"fan{n}-{i:05d}="},
                        "topic": {"S": topic},
                        "tenant_id": {"S": TENANT},
                        "tenant_topic": {"S": f"{TENANT}#{topic}"},
                        "subscribed_at": {"N": str(int(time.time() * 1000))},
                        "expires_at": {"N": str(expires)},
                    }
                }
            }
            for i in range(n)
        ]
        for start in range(0, n, 25):
            setup.batch_write_item(RequestItems={table: items[start : start + 25]})
        if n > DIRECT_MAX:
            # A job the status measurements left queued must not land among the shards.
            driver.probe.purge_queue(QueueUrl=driver.queue_url)
        with _measured(driver) as read:
            started = time.process_time()
            report = publish(TENANT, topic, {"n": n}, runtime=driver.runtime)
            driver.cpu += time.process_time() - started
        published, publisher_cpu = read()
        if n <= DIRECT_MAX:
            if len(report.delivered) != n:
                raise RuntimeError(f"publish to {n} delivered {len(report.delivered)}")
            note = "sent by the publisher: one query, then the posts"
            ops.append(Op(f"publish to {n:,}", published, publisher_cpu, note=note))
            continue
        if report.queued != n:
            raise RuntimeError(f"publish to {n} queued {report.queued}")
        esm_before = driver.esm.snapshot()
        with _measured(driver) as read:
            batches = 0
            while driver.queued():
                response = driver.run_queue(batch_size=10)
                batches += 1
                if response.get("batchItemFailures"):
                    raise RuntimeError(f"processor answered {response}")
        sent, shards_cpu = read()
        esm = driver.esm.snapshot() - esm_before
        if sent.posts != n:
            raise RuntimeError(f"the shards of a publish to {n} made {sent.posts} posts")
        ops.append(
            Op(
                f"publish to {n:,}",
                published + sent,
                publisher_cpu + shards_cpu,
                note=f"{report.shards} shards of {SHARD_SIZE}: the publisher's "
                f"{published.describe()}; the processor's {sent.describe()}; "
                "a shard checks each connection it lists (it is not trusted to name them)",
            )
        )
        ops.append(Op("sharded publish, the publisher", published, publisher_cpu))
        ops.append(Op("sharded publish, the shards", sent, shards_cpu))
        ops.append(Op("sharded publish, event source mapping", esm, 0.0))
    return ops


# ------------------------------------------------------------------ prices


def _service_counts(op: Op) -> dict[str, float]:
    return {
        service: op.counts.service(service) / op.per for service in ("dynamodb", "sqs", MANAGEMENT)
    }


def _prices(ops: dict[str, Op], memory_mb: int = prices.MEMORY_MB) -> dict[str, dict[str, float]]:
    """Dollars per scenario, split by service, with every function at ``memory_mb``.

    docs/costs.md explains each model.
    """
    p = prices.price
    out: dict[str, dict[str, float]] = {}

    # One million sync messages on busy connections.
    echo = ops["sync echo (1,000 messages)"]
    writes_per_message = echo.counts.service("dynamodb") / echo.per
    reserving = prices.billed_ms(echo.cpu_ms, prices.ROUND_TRIP_MS["dynamodb"], memory_mb)
    plain = prices.billed_ms(echo.cpu_ms, 0.0, memory_mb)
    billed = writes_per_message * reserving + (1 - writes_per_message) * plain
    out["1M sync messages"] = {
        "lambda": prices.lambda_usd(1e6, billed, memory_mb),
        "api_gateway": 2e6 * p("websocket_message"),
        "dynamodb": 1e6 * writes_per_message * p("dynamodb_write_unit"),
    }

    # One thousand async jobs of ten progress updates, one follower each.
    submit = ops["async submit to acknowledgment"]
    job = ops[f"job of {PROGRESS_STEPS} progress updates (processor)"]
    esm = ops["event source mapping, per job"]
    submit_requests = _service_counts(submit)
    job_requests = _service_counts(job)
    submit_ms = prices.billed_ms(submit.cpu_ms, prices.wait_ms(submit_requests), memory_mb)
    job_ms = prices.billed_ms(job.cpu_ms, prices.wait_ms(job_requests), memory_mb)
    posts = job_requests[MANAGEMENT]
    out["1,000 async jobs x 10 progress"] = {
        "lambda": prices.lambda_usd(1000, submit_ms, memory_mb)
        + prices.lambda_usd(1000, job_ms, memory_mb),
        "api_gateway": 1000 * (2 + posts) * p("websocket_message"),
        "dynamodb": 1000
        * (submit_requests["dynamodb"] + job_requests["dynamodb"])
        * p("dynamodb_write_unit"),
        "sqs": 1000 * (submit_requests["sqs"] + esm.counts.service("sqs")) * p("sqs_request"),
    }

    # One million fan-out deliveries, as publishes to 10,000 subscribers: the publishing
    # function queues shards, processor invocations of ten shards send them, paced.
    n = FAN_OUTS[-1]
    publishes = 1e6 / n
    shards = math.ceil(n / SHARD_SIZE)
    invocations = math.ceil(shards / 10)
    publisher = ops["sharded publish, the publisher"]
    sent = ops["sharded publish, the shards"]
    esm = ops["sharded publish, event source mapping"]
    publisher_ms = prices.billed_ms(
        publisher.cpu_ms,
        prices.wait_ms(
            {
                "dynamodb": publisher.counts.service("dynamodb"),
                "sqs": publisher.counts.service("sqs"),
            }
        ),
        memory_mb,
    )
    posts = n / invocations
    cpu_bound = sent.cpu_ms / invocations * prices.slowdown(memory_mb)
    latency_bound = posts / SENDER_THREADS * prices.ROUND_TRIP_MS[MANAGEMENT]
    paced = posts / SENDS_PER_SECOND * 1000
    # One BatchGetItem per shard; the ten shards of a batch check theirs side by side.
    shard_queries_ms = prices.ROUND_TRIP_MS["dynamodb"]
    invocation_ms = prices.billed_ms(
        0.0, max(cpu_bound, latency_bound, paced) + shard_queries_ms, memory_mb
    )
    out["1M fan-out deliveries"] = {
        "lambda": prices.lambda_usd(publishes, publisher_ms, memory_mb)
        + prices.lambda_usd(publishes * invocations, invocation_ms, memory_mb),
        "api_gateway": 1e6 * p("websocket_message"),
        "dynamodb": publishes
        * (
            math.ceil(n / PAGE) * prices.query_read_units(PAGE)
            # BatchGetItem bills each item alone: half a unit, eventually consistent.
            + n * 0.5
        )
        * p("dynamodb_read_unit"),
        "sqs": publishes
        * (publisher.counts.service("sqs") + esm.counts.service("sqs"))
        * p("sqs_request"),
    }

    # One connection held for a month by the Python client: heartbeats and reconnects.
    connect = ops["$connect"]
    disconnect = ops[f"$disconnect, {SUBSCRIPTIONS_ON_DISCONNECT} subscriptions"]
    pings = MONTH_MINUTES * 60 / HEARTBEAT_S
    reconnects = MONTH_MINUTES * 60 / RECONNECT_S
    authorizer_cpu = AUTHORIZER_CPU_MS[-1]
    ping_ms = prices.billed_ms(echo.cpu_ms, prices.ROUND_TRIP_MS["dynamodb"], memory_mb)
    authorizer_ms = prices.billed_ms(authorizer_cpu, 0.0, memory_mb)
    route_ms = prices.billed_ms(
        connect.cpu_ms - authorizer_cpu, prices.ROUND_TRIP_MS["dynamodb"], memory_mb
    )
    # Without subscriptions, $disconnect is a query that finds none and a delete.
    disconnect_ms = prices.billed_ms(
        disconnect.cpu_ms, 2 * prices.ROUND_TRIP_MS["dynamodb"], memory_mb
    )
    out["1 connection for a month"] = {
        "lambda": prices.lambda_usd(pings, ping_ms, memory_mb)
        + prices.lambda_usd(reconnects, authorizer_ms, memory_mb)
        + prices.lambda_usd(reconnects, route_ms, memory_mb)
        + prices.lambda_usd(reconnects, disconnect_ms, memory_mb),
        "api_gateway": MONTH_MINUTES * p("websocket_connection_minute")
        + 2 * pings * p("websocket_message"),
        # Every heartbeat opens a new rate-limit window: one reservation each.
        "dynamodb": (pings + 2 * reconnects) * p("dynamodb_write_unit")
        + reconnects * prices.query_read_units(0) * p("dynamodb_read_unit"),
    }
    return out


# ------------------------------------------------------------------ the run


def _request_rows(op: Op) -> list[Result]:
    """The request counts of one operation, each next to its target where it has one."""
    counts = op.counts
    note = counts.describe()
    if op.name in BEFORE:
        note += f"; before: {BEFORE[op.name]}"
    if op.note:
        note += f"; {op.note}"
    extra = {"calls": counts.calls(), "invocations": dict(counts.invocations)}
    if op.name in ("each progress", "final complete"):
        return [
            Result(
                NAME,
                f"{op.name}: DynamoDB requests",
                "requests",
                [float(counts.service("dynamodb"))],
                target=Target(1, on="value"),
                note=note,
                extra=extra,
            ),
            Result(
                NAME,
                f"{op.name}: posts per follower",
                "requests",
                [float(counts.posts)],
                target=Target(1, on="value"),
            ),
        ]
    if op.name.startswith("sharded publish,"):
        return []  # its parts, for the price model; the rows are "publish to 10,000"
    if op.name.startswith("publish to "):
        n = int(op.name.removeprefix("publish to ").replace(",", ""))
        rows = [
            Result(
                NAME,
                f"{op.name}: DynamoDB requests",
                "requests",
                [float(counts.service("dynamodb"))],
                target=Target(math.ceil(n / PAGE), on="value"),
                note=note,
                extra=extra,
            ),
            Result(
                NAME,
                f"{op.name}: posts",
                "requests",
                [float(counts.posts)],
                target=Target(n, on="value"),
            ),
        ]
        if counts.service("sqs"):
            rows.append(
                Result(
                    NAME,
                    f"{op.name}: SQS requests (shards, ten to a batch)",
                    "requests",
                    [float(counts.service("sqs"))],
                    note=f"{counts[('sqs', 'SendMessageBatch')]} SendMessageBatch",
                )
            )
        return rows
    target = None if op.target is None else Target(op.target, on="value")
    return [
        Result(
            NAME,
            f"{op.name}: AWS requests",
            "requests",
            [float(counts.total)],
            target=target,
            note=note,
            extra=extra,
        )
    ]


def _results(ops: list[Op]) -> list[Result]:
    results = [row for op in ops for row in _request_rows(op)]
    results += [
        Result(NAME, f"{op.name}: handler CPU", "ms", [op.cpu_ms]) for op in ops if op.cpu_ms
    ]
    by_name = {op.name: op for op in ops}
    sweep = {memory: _prices(by_name, memory) for memory in MEMORY_SIZES}
    for scenario, parts in sweep[prices.MEMORY_MB].items():
        lambda_by_memory = {memory: sweep[memory][scenario]["lambda"] for memory in MEMORY_SIZES}
        results.append(
            Result(
                NAME,
                f"price: {scenario}",
                "USD",
                [sum(parts.values())],
                note=", ".join(f"{k} {v:.4g}" for k, v in parts.items()),
                extra={
                    "parts": parts,
                    "lambda_by_memory_mb": lambda_by_memory,
                    "prices_read_on": prices.READ_ON,
                },
            )
        )
        results.append(
            Result(
                NAME,
                f"price: {scenario}, Lambda part at {prices.ONE_VCPU_MB} MB",
                "USD",
                [lambda_by_memory[prices.ONE_VCPU_MB]],
                note=f"{parts['lambda']:.4g} at {prices.MEMORY_MB} MB",
            )
        )
    return results


async def _measure(config: RunConfig) -> list[Result]:
    from streamer_core.auth import TokenIssuer, generate_key_pair

    from benchmarks.control import ServerProcess

    private_pem, public_pem = generate_key_pair("RS256")
    issuer = TokenIssuer(private_pem, algorithm="RS256", issuer="bench", audience="bench")
    async with ServerProcess("benchmarks.aws_requests", "serve") as servers:
        endpoint, sink = servers.info["aws"], servers.info["sink"]
        resources = aws.provision(endpoint)
        queue_url = resources["STREAMER_QUEUE_URL"]
        queue_arn = aws.client("sqs", endpoint).get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        env = {
            **aws.BASE_ENV,
            **resources,
            "STREAMER_JWT_PUBLIC_KEY": public_pem,
            "STREAMER_MANAGEMENT_ENDPOINT": sink,
            "STREAMER_APP": "benchmarks.aws_requests:app",
            "STREAMER_RATE_LIMIT": str(RATE_LIMIT),
            "STREAMER_PROGRESS_PER_SECOND": "1000",
            # Pacing changes how long shards take, never what they request: lifted here,
            # priced in the model (SENDS_PER_SECOND).
            "STREAMER_FANOUT_SENDS_PER_SECOND": "1000000000",
        }
        # Made before the handlers' clients are hooked: the poller's requests are its own.
        esm_sqs = aws.client("sqs", endpoint)
        probe = aws.client("sqs", endpoint)
        with _environment(env), COUNTER.new_sessions(), _quiet_stdout():
            from streamer_handlers.deployment import (
                Runtime,
                Settings,
                logger,
                reset_runtime,
                set_runtime,
            )

            level = logger.log_level
            logger.setLevel("WARNING")  # its level was read when it was first imported
            reset_runtime()
            clock = WindowClock()
            runtime = Runtime(Settings.from_env(), clock=clock)
            set_runtime(runtime)
            sender: Any = runtime.sender
            COUNTER.watch(runtime.dynamodb, runtime.sqs, sender.client)
            try:
                driver = Driver(runtime, issuer, queue_arn, queue_url, esm_sqs)
                driver.probe = probe
                ops = _operations(driver, clock, config)
            finally:
                COUNTER.unwatch(runtime.dynamodb, runtime.sqs, sender.client)
                reset_runtime()
                logger.setLevel(level)
    return _results(ops)


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """EMF metric lines go to stdout on every invocation; keep them out of the table."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


def run(config: RunConfig) -> list[Result]:
    for module in ("streamer_handlers.functions.processor", "streamer_infra.local._events"):
        if not module_exists(module):
            raise Unavailable(f"{module} does not exist yet")
    return asyncio.run(_measure(config))


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        asyncio.run(_serve())
