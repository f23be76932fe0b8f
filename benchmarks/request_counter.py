"""Counting the AWS requests and Lambda invocations an operation makes.

On AWS an operation's time and price are mostly its requests, so they are counted, by
service and API, through botocore's own event hooks: a ``before-call`` handler fires once
per API call of a client, whatever made the client. Two ways to attach it, usable together:

- :meth:`RequestCounter.watch` registers on clients that already exist (the runtime's
  DynamoDB and SQS clients, the sender's management-API client);
- :meth:`RequestCounter.new_sessions` adds the hook to every botocore session created while
  it is active, so clients the handlers build for themselves are counted too.

A call seen by both registrations is counted once. Management-API posts can also be counted
at the sender seam (:class:`CountingSender`), for tests whose sender records frames instead
of posting them; a post counted there is named exactly as botocore names it.

Counts are deterministic, so tests compare them exactly (``tests/handlers``) and the
``aws_requests`` benchmark prints them next to their targets.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MANAGEMENT = "apigatewaymanagementapi"
POST = (MANAGEMENT, "PostToConnection")


@dataclass(frozen=True)
class Counts:
    """What one operation cost: AWS requests by (service, API), Lambda invocations by function."""

    requests: Mapping[tuple[str, str], int] = field(default_factory=dict)
    invocations: Mapping[str, int] = field(default_factory=dict)

    def __getitem__(self, call: tuple[str, str]) -> int:
        return self.requests.get(call, 0)

    def service(self, name: str) -> int:
        """Requests made to one service (``dynamodb``, ``sqs``, ``apigatewaymanagementapi``)."""
        return sum(n for (service, _), n in self.requests.items() if service == name)

    @property
    def total(self) -> int:
        """Every AWS request, management-API posts included."""
        return sum(self.requests.values())

    @property
    def posts(self) -> int:
        return self[POST]

    def calls(self) -> dict[str, int]:
        """``{"dynamodb.UpdateItem": 1, ...}``: compact, and easy to compare in a test."""
        return {f"{service}.{api}": n for (service, api), n in sorted(self.requests.items()) if n}

    def describe(self) -> str:
        """One line for a table note: ``dynamodb UpdateItem 1, sqs SendMessage 1``."""
        parts = [f"{service} {api} {n}" for (service, api), n in sorted(self.requests.items()) if n]
        parts += [f"{name} invocation {n}" for name, n in sorted(self.invocations.items()) if n]
        return ", ".join(parts) or "nothing"

    def __add__(self, other: Counts) -> Counts:
        requests = Counter(self.requests)
        requests.update(other.requests)
        invocations = Counter(self.invocations)
        invocations.update(other.invocations)
        return Counts(dict(requests), dict(invocations))

    def __sub__(self, other: Counts) -> Counts:
        requests = Counter(self.requests)
        requests.subtract(other.requests)
        invocations = Counter(self.invocations)
        invocations.subtract(other.invocations)
        return Counts(
            {k: v for k, v in requests.items() if v},
            {k: v for k, v in invocations.items() if v},
        )


class RequestCounter:
    """Counts AWS API calls and Lambda invocations, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, str]] = Counter()
        self._invocations: Counter[str] = Counter()
        self._mark = f"streamer-counted-{id(self)}"

    def _before_call(self, model: Any = None, context: Any = None, **_: Any) -> None:
        if model is None:
            return
        if isinstance(context, dict):
            if context.get(self._mark):
                return  # registered twice on this client: one call, counted once
            context[self._mark] = True
        self.add(model.service_model.service_name, model.name)

    def add(self, service: str, api: str, n: int = 1) -> None:
        """Count ``n`` calls of ``api`` on ``service`` made some way botocore does not see."""
        with self._lock:
            self._requests[(service, api)] += n

    def invoked(self, function: str, n: int = 1) -> None:
        """Count a Lambda invocation of ``function`` (the caller invokes handlers itself)."""
        with self._lock:
            self._invocations[function] += n

    def watch(self, *clients: Any) -> None:
        """Count every call these boto3 clients make from now on (idempotent per client)."""
        for client in clients:
            client.meta.events.register("before-call.*.*", self._before_call, unique_id=self._mark)

    def unwatch(self, *clients: Any) -> None:
        for client in clients:
            client.meta.events.unregister(
                "before-call.*.*", self._before_call, unique_id=self._mark
            )

    @contextlib.contextmanager
    def new_sessions(self) -> Iterator[None]:
        """Count the calls of every client whose botocore session is created inside the block.

        botocore registers its built-in handlers on each new session, and each client copies
        its session's handlers; the hook rides along from the list of built-ins.
        """
        from botocore import handlers

        spec = ("before-call.*.*", self._before_call)
        handlers.BUILTIN_HANDLERS.append(spec)
        try:
            yield
        finally:
            with contextlib.suppress(ValueError):
                handlers.BUILTIN_HANDLERS.remove(spec)

    def snapshot(self) -> Counts:
        with self._lock:
            return Counts(dict(self._requests), dict(self._invocations))

    @contextlib.contextmanager
    def measure(self) -> Iterator[Measured]:
        """What the block cost; read ``.counts`` after it ends."""
        measured = Measured()
        before = self.snapshot()
        try:
            yield measured
        finally:
            measured.counts = self.snapshot() - before


@dataclass
class Measured:
    counts: Counts = field(default_factory=Counts)


class CountingSender:
    """A :class:`streamer_handlers._delivery.management.Sender` that counts one post per connection.

    It wraps the sender that delivers (or records) the frames, so the count is the number
    of ``PostToConnection`` calls the management sender would make: one per connection of
    each send, duplicates removed as the management sender removes them.
    """

    def __init__(self, inner: Any, counter: RequestCounter) -> None:
        self.inner = inner
        self._counter = counter

    def send(self, connection_ids: Sequence[str], data: str) -> Any:
        ids = list(dict.fromkeys(connection_ids))
        if ids:
            self._counter.add(*POST, n=len(ids))
        return self.inner.send(ids, data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
