"""Large fan-outs: shards on the work queue, their boundaries, retries, throttling and pacing."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
from botocore.exceptions import ClientError
from handler_doubles import RecordingSender
from streamer_handlers import DeliveryReport, publish
from streamer_handlers._delivery import sharding
from streamer_handlers._delivery.sharding import FanoutLimits, Pacer
from streamer_handlers.deployment import ManagementSender, SettingsError

SHARD = 5
DIRECT = 2


@pytest.fixture
def small_shards(stack, monkeypatch: pytest.MonkeyPatch):
    """Shards of five above two subscribers, unpaced, retries without a delay."""
    monkeypatch.setenv("STREAMER_FANOUT_SHARD_SIZE", str(SHARD))
    monkeypatch.setenv("STREAMER_FANOUT_DIRECT_MAX", str(DIRECT))
    monkeypatch.setenv("STREAMER_FANOUT_SENDS_PER_SECOND", "1000000")
    monkeypatch.setattr(sharding, "retry_delay_seconds", lambda attempt: 0)
    return stack


def _subscribe(stack, n: int, *, tenant: str = "acme", topic: str = "wide", prefix: str = "c"):
    subscriptions = stack.runtime.storage.subscriptions
    expires = int(stack.clock()) + 3600
    ids = [f"{prefix}{index:05d}=" for index in range(n)]
    for connection_id in ids:
        subscriptions.subscribe(connection_id, tenant, topic, expires_at=expires)
    return ids


def _take_queue(stack) -> list[dict[str, Any]]:
    """Every message now visible on the work queue, removed from it."""
    taken: list[dict[str, Any]] = []
    while True:
        messages = stack.receive_messages()
        if not messages:
            return taken
        for message in messages:
            stack.sqs.delete_message(
                QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
        taken += messages


def _bodies(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [json.loads(m["Body"]) for m in messages]


def _run(stack, messages: Sequence[dict[str, Any]]) -> dict[str, Any]:
    batch = [{"body": m["Body"], "message_id": m["MessageId"]} for m in messages]
    return stack.process(batch)


def _run_queue(stack) -> int:
    """Run the processor until the queue is empty (follow-ups included); batches run."""
    batches = 0
    while messages := _take_queue(stack):
        for start in range(0, len(messages), 10):
            assert _run(stack, messages[start : start + 10]) == {"batchItemFailures": []}
            batches += 1
    return batches


def _events_per_connection(sender: RecordingSender) -> Counter[str]:
    return Counter(cid for cid, frame in sender.sent if frame["type"] == "event")


# -- direct or sharded, and where the shards end -------------------------------------------


@pytest.mark.parametrize("subscribers", [1, DIRECT])
def test_a_topic_within_the_direct_limit_is_sent_at_once_without_the_queue(
    small_shards, subscribers
):
    stack = small_shards
    ids = _subscribe(stack, subscribers)
    report = publish("acme", "wide", {"n": 1})
    assert sorted(report.delivered) == ids
    assert (report.queued, report.shards) == (0, 0)
    assert _take_queue(stack) == []


@pytest.mark.parametrize(
    ("subscribers", "sizes"),
    [
        (DIRECT + 1, [3]),
        (SHARD - 1, [4]),
        (SHARD, [5]),
        (SHARD + 1, [5, 1]),
        (2 * SHARD, [5, 5]),
        (2 * SHARD + 1, [5, 5, 1]),
    ],
)
def test_a_larger_topic_is_cut_into_shards_of_the_shard_size(small_shards, subscribers, sizes):
    stack = small_shards
    ids = _subscribe(stack, subscribers)
    report = publish("acme", "wide", {"n": 2}, event_id="evt-shards")
    assert report.delivered == ()
    assert (report.queued, report.shards) == (subscribers, len(sizes))
    assert stack.sender.sent == []  # nothing left this process

    messages = _take_queue(stack)
    shards = sorted(_bodies(messages), key=lambda body: body["connections"][0])
    assert [body["kind"] for body in shards] == ["fanout"] * len(sizes)
    # Every subscriber in exactly one shard, in order, each shard as large as its share.
    expected = [ids[sum(sizes[:i]) : sum(sizes[: i + 1])] for i in range(len(sizes))]
    assert [body["connections"] for body in shards] == expected
    assert {body["id"] for body in shards} == {"evt-shards"}
    assert {body["attempt"] for body in shards} == {1}

    assert _run(stack, messages) == {"batchItemFailures": []}
    assert _events_per_connection(stack.sender) == Counter(ids)
    frames = {json.dumps(frame, sort_keys=True) for _, frame in stack.sender.sent}
    assert len(frames) == 1  # one event, identical for everyone: same id, same time
    [frame] = [json.loads(text) for text in frames]
    assert (frame["topic"], frame["data"], frame["id"]) == ("wide", {"n": 2}, "evt-shards")


def test_default_limits_are_one_query_page_direct_and_shards_of_a_hundred(stack):
    limits = FanoutLimits.from_env({})
    assert (limits.direct_max, limits.shard_size) == (1000, 100)
    # 100 invocations (production's reserved concurrency) at this rate stay within half
    # of API Gateway's 10,000 requests per second.
    assert limits.sends_per_second * 100 <= 5000


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STREAMER_FANOUT_SHARD_SIZE", "0"),
        ("STREAMER_FANOUT_SHARD_SIZE", "2.5"),
        ("STREAMER_FANOUT_DIRECT_MAX", "-1"),
        ("STREAMER_FANOUT_SENDS_PER_SECOND", "fast"),
        ("STREAMER_FANOUT_SENDS_PER_SECOND", "0"),
    ],
)
def test_bad_limits_are_configuration_errors(name, value):
    with pytest.raises(SettingsError, match=name):
        FanoutLimits.from_env({name: value})


def test_a_connection_that_unsubscribed_after_the_publish_is_skipped(small_shards):
    stack = small_shards
    ids = _subscribe(stack, SHARD + 1)
    publish("acme", "wide", "x")
    messages = _take_queue(stack)
    stack.runtime.storage.subscriptions.unsubscribe(ids[2], "wide")
    _run(stack, messages)
    assert _events_per_connection(stack.sender) == Counter(ids[:2] + ids[3:])


def test_an_expired_subscription_listed_in_a_shard_is_skipped(small_shards):
    """DynamoDB deletes expired items late (moto never does): expired counts as gone."""
    stack = small_shards
    ids = _subscribe(stack, SHARD + 1)
    publish("acme", "wide", "x")
    messages = _take_queue(stack)
    subscriptions = stack.runtime.storage.subscriptions
    subscriptions.unsubscribe(ids[1], "wide")
    subscriptions.subscribe(ids[1], "acme", "wide", expires_at=int(stack.clock()) - 1)
    _run(stack, messages)
    assert _events_per_connection(stack.sender) == Counter(ids[:1] + ids[2:])


def test_a_shards_check_retries_the_keys_dynamodb_left_unprocessed():
    from streamer_core.storage.subscriptions import SubscriptionStore

    class Throttled:
        """BatchGetItem that leaves the second key for a second call, as under throttling."""

        def __init__(self) -> None:
            self.calls: list[list[str]] = []

        def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
            keys = RequestItems["subs"]["Keys"]
            self.calls.append([key["connection_id"]["S"] for key in keys])
            found = [
                {
                    "connection_id": key["connection_id"],
                    "tenant_topic": {"S": "acme#wide"},
                    "expires_at": {"N": "2000000000"},
                }
                for key in keys[:1]
            ]
            rest = {"subs": {"Keys": keys[1:]}} if keys[1:] else {}
            return {"Responses": {"subs": found}, "UnprocessedKeys": rest}

    client = Throttled()
    store = SubscriptionStore(client, "subs", clock=lambda: 1_800_000_000.0, sleep=lambda _: None)
    assert store.subscribed("acme", "wide", ["a=", "b=", "a="]) == ["a=", "b="]
    assert client.calls == [["a=", "b="], ["b="]]


def _subscribe_one(stack, connection_id: str, tenant: str = "acme", topic: str = "wide") -> None:
    expires = int(stack.clock()) + 3600
    stack.runtime.storage.subscriptions.subscribe(connection_id, tenant, topic, expires_at=expires)


# -- retries -----------------------------------------------------------------------------


class FlakySender(RecordingSender):
    """Fails the listed connections the first ``times`` times each is posted to."""

    def __init__(self, failing: set[str], times: int = 1) -> None:
        super().__init__()
        self.failing = {connection_id: times for connection_id in failing}
        self.attempts: Counter[str] = Counter()

    def send(self, connection_ids: Sequence[str], data: str) -> DeliveryReport:
        failed = []
        rest = []
        for connection_id in connection_ids:
            self.attempts[connection_id] += 1
            if self.failing.get(connection_id, 0) > 0:
                self.failing[connection_id] -= 1
                failed.append(connection_id)
            else:
                rest.append(connection_id)
        report = super().send(rest, data)
        return DeliveryReport(delivered=report.delivered, gone=report.gone, failed=tuple(failed))


def test_a_failed_shard_is_retried_for_the_failed_connections_only(small_shards):
    stack = small_shards
    ids = _subscribe(stack, 2 * SHARD)
    failing = {ids[1], ids[3], ids[SHARD + 2]}
    sender = FlakySender(failing)
    stack.reconfigure(sender=sender)
    publish("acme", "wide", "news", event_id="evt-retry")

    first = _take_queue(stack)
    assert _run(stack, first) == {"batchItemFailures": []}
    retries = _bodies(_take_queue_keep(stack))
    # One retry per failed shard, listing only the connections it still owes.
    assert sorted(tuple(body["connections"]) for body in retries) == [
        (ids[1], ids[3]),
        (ids[SHARD + 2],),
    ]
    assert {body["attempt"] for body in retries} == {2}
    assert {body["id"] for body in retries} == {"evt-retry"}

    _run_queue(stack)
    # Everyone has the event exactly once; those that failed were posted to twice.
    assert _events_per_connection(sender) == Counter(ids)
    assert sender.attempts == Counter({**Counter(ids), **{c: 2 for c in failing}})


def _take_queue_keep(stack) -> list[dict[str, Any]]:
    """The visible messages, made visible again for the next receive."""
    messages = stack.receive_messages()
    for message in messages:
        stack.sqs.change_message_visibility(
            QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    return messages


def test_a_shard_reaches_only_the_topics_subscribers_among_what_it_lists(small_shards):
    stack = small_shards
    ids = _subscribe(stack, SHARD + 1)
    elsewhere = _subscribe(stack, 2, topic="other", prefix="o")
    publish("acme", "wide", "x")
    [shard] = [m for m in _take_queue(stack) if ids[0] in json.loads(m["Body"])["connections"]]
    body = json.loads(shard["Body"])
    body["connections"] = [ids[2], *elsewhere, "never-connected="]
    _run(stack, [{**shard, "Body": json.dumps(body)}])
    assert _events_per_connection(stack.sender) == Counter([ids[2]])


def test_retries_stop_after_the_last_attempt_and_are_counted(small_shards, log_lines):
    stack = small_shards
    ids = _subscribe(stack, DIRECT + 1)
    sender = FlakySender({ids[0]}, times=100)
    stack.reconfigure(sender=sender)
    publish("acme", "wide", "x", event_id="evt-doomed")
    _run_queue(stack)
    assert sender.attempts[ids[0]] == sharding.MAX_SHARD_ATTEMPTS
    assert _events_per_connection(sender) == Counter(ids[1:])
    [line] = [line for line in log_lines() if line["message"].startswith("fan-out undelivered")]
    assert (line["event_id"], line["connections"]) == ("evt-doomed", 1)


def test_a_shard_delivered_twice_by_sqs_sends_the_same_event_twice(small_shards):
    """SQS may deliver a message twice: the second copy posts again, with the same event id,
    and clients drop an event id they have seen (tests/client, tests/e2e)."""
    stack = small_shards
    ids = _subscribe(stack, DIRECT + 1)
    publish("acme", "wide", "x")
    [shard] = _take_queue(stack)
    _run(stack, [shard])
    _run(stack, [{**shard, "MessageId": "another-receive"}])
    frames = [frame for cid, frame in stack.sender.sent if cid == ids[0]]
    assert len(frames) == 2
    assert frames[0] == frames[1]


def test_a_direct_publish_queues_the_connections_it_could_not_reach(small_shards):
    stack = small_shards
    ids = _subscribe(stack, DIRECT)
    sender = FlakySender({ids[1]})
    stack.reconfigure(sender=sender)
    report = publish("acme", "wide", "x", event_id="evt-direct")
    assert report.delivered == (ids[0],)
    assert (report.failed, report.queued, report.shards) == ((), 1, 1)
    [retry] = _bodies(_take_queue_keep(stack))
    assert (retry["connections"], retry["attempt"]) == ([ids[1]], 2)
    _run_queue(stack)
    assert _events_per_connection(sender) == Counter(ids)


def test_without_a_queue_a_direct_publish_reports_what_failed(small_shards):
    stack = small_shards
    ids = _subscribe(stack, DIRECT)
    sender = FlakySender({ids[1]})
    stack.reconfigure(sender=sender, queue_url=None)
    report = publish("acme", "wide", "x")
    assert (report.delivered, report.failed, report.queued) == ((ids[0],), (ids[1],), 0)


def test_without_a_queue_a_large_topic_is_sent_from_the_publisher(small_shards):
    stack = small_shards
    stack.reconfigure(queue_url=None)
    ids = _subscribe(stack, 3 * SHARD)
    report = publish("acme", "wide", "x")
    assert sorted(report.delivered) == ids
    assert report.queued == 0


def test_a_shard_that_cannot_queue_its_retry_fails_alone_and_comes_back(small_shards):
    stack = small_shards
    ids = _subscribe(stack, 2 * SHARD)
    publish("acme", "wide", "x")
    messages = _take_queue(stack)
    stack.reconfigure(sender=FlakySender({ids[0]}), sqs=_BrokenBatches(stack.sqs))
    first = next(m for m in messages if ids[0] in json.loads(m["Body"])["connections"])
    result = _run(stack, messages)
    assert result == {"batchItemFailures": [{"itemIdentifier": first["MessageId"]}]}


class _BrokenBatches:
    """An SQS client whose batch sends fail; everything else is the real one."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def send_message_batch(self, **kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": "ServiceUnavailable"}}, "SendMessageBatch")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


# -- throttling and pacing -----------------------------------------------------------------


class ThrottlingClient:
    """A management API that answers 429 to each connection's first post, then 200."""

    def __init__(self, throttles: int = 1) -> None:
        self.throttles = throttles
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()

    def post_to_connection(self, ConnectionId: str, Data: bytes) -> dict[str, Any]:
        with self.lock:
            self.calls[ConnectionId] += 1
            throttled = self.calls[ConnectionId] <= self.throttles
        if throttled:
            raise ClientError(
                {
                    "Error": {"Code": "LimitExceededException", "Message": "Rate exceeded"},
                    "ResponseMetadata": {"HTTPStatusCode": 429},
                },
                "PostToConnection",
            )
        return {}


def test_a_throttled_post_is_retried_with_backoff_not_dropped():
    client = ThrottlingClient(throttles=1)
    sleeps: list[float] = []
    sender = ManagementSender(None, client=client, sleep=sleeps.append, jitter=lambda: 1.0)
    report = sender.send(["a=", "b="], '{"type":"event"}')
    assert sorted(report.delivered) == ["a=", "b="]
    assert client.calls == Counter({"a=": 2, "b=": 2})
    assert sleeps == [pytest.approx(0.1), pytest.approx(0.1)]


def test_throttling_has_a_longer_budget_than_other_errors():
    client = ThrottlingClient(throttles=6)
    sleeps: list[float] = []
    sender = ManagementSender(
        None, client=client, sleep=sleeps.append, jitter=lambda: 1.0, max_attempts=2
    )
    assert sender.send(["a="], "{}").delivered == ("a=",)
    assert sleeps == [pytest.approx(d) for d in (0.1, 0.2, 0.4, 0.8, 1.6, 3.2)]


def test_a_shard_throttled_past_the_senders_budget_is_queued_again(small_shards):
    stack = small_shards
    ids = _subscribe(stack, DIRECT + 1)
    client = ThrottlingClient(throttles=3)
    sender = ManagementSender(None, client=client, sleep=lambda _: None, throttled_attempts=2)
    stack.reconfigure(sender=sender)
    publish("acme", "wide", "x")
    _run_queue(stack)
    # Two posts each in the shard (both throttled), then the retry's two: throttled, 200.
    assert client.calls == Counter({connection_id: 4 for connection_id in ids})


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_pacer_holds_posts_to_its_rate():
    time = FakeTime()
    pacer = Pacer(50, clock=time.clock, sleep=time.sleep)
    assert pacer.slice_size == 5
    for _ in range(40):  # 200 posts at 50 a second
        pacer.take(5)
    assert time.now == pytest.approx(4.0)


def test_a_new_pacer_has_no_burst_to_give():
    """Every invocation starts empty: a stream of short invocations in one execution
    environment cannot post faster than the rate by starting each with a full bucket."""
    time = FakeTime()
    for _ in range(10):
        pacer = Pacer(50, clock=time.clock, sleep=time.sleep)
        pacer.take(5)
    assert time.now == pytest.approx(1.0)


def test_an_idle_pacer_saves_up_one_slice_at_most():
    time = FakeTime()
    pacer = Pacer(50, clock=time.clock, sleep=time.sleep)
    time.now += 60  # a minute of waiting on something else
    for _ in range(11):
        pacer.take(5)
    assert time.now == pytest.approx(61.0)


def test_an_invocation_sends_its_shards_at_the_paced_rate(small_shards, monkeypatch):
    stack = small_shards
    monkeypatch.setenv("STREAMER_FANOUT_SHARD_SIZE", "40")
    monkeypatch.setenv("STREAMER_FANOUT_SENDS_PER_SECOND", "20")
    time = FakeTime()

    class FakeTimePacer(Pacer):
        def __init__(self, per_second: float) -> None:
            super().__init__(per_second, clock=time.clock, sleep=time.sleep)

    from streamer_handlers.functions import processor

    monkeypatch.setattr(processor, "Pacer", FakeTimePacer)
    ids = _subscribe(stack, 40)
    publish("acme", "wide", "x")
    assert _run_queue(stack) == 1
    assert _events_per_connection(stack.sender) == Counter(ids)
    # 40 posts at 20 a second.
    assert time.now == pytest.approx(2.0)
