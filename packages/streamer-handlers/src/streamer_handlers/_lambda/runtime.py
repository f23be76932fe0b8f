"""The clients and stores one warm process shares across invocations.

Everything is created on first use and then cached, because Lambda reuses a warm process
and boto3 clients are the most expensive thing a cold start can pay for. The runtime is
also the seam the tests and the local stack use: :func:`set_runtime` swaps in one built
from moto clients and a recording sender, :func:`reset_runtime` drops it.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from streamer_handlers._lambda.settings import Settings, SettingsError, get_settings
from streamer_handlers._lambda.timers import Scheduler, thread_timer

if TYPE_CHECKING:
    from streamer_core.auth import TokenVerifier
    from streamer_core.storage import Storage

    from streamer_handlers._app import Streamer
    from streamer_handlers._delivery.management import Sender

_boto_lock = threading.Lock()
_boto_session: Any = None


# One client serves every thread of a process: the sender's fan-out pool on Lambda, and
# every concurrent invocation of the local stack. botocore's default pool of 10
# connections would make the rest wait (and warn "Connection pool is full").
MAX_POOL_CONNECTIONS = 64


def boto_session() -> Any:
    """The one boto3 session every client of this process is built from.

    A session owns botocore's loader and endpoint resolver, which parse the partition and
    endpoint data (a large JSON file) and list the bundled service models once per session:
    building every client from the same session pays that once per process, whoever else
    (an application, a library) replaces boto3's default session.
    """
    global _boto_session
    with _boto_lock:
        if _boto_session is None:
            import boto3.session

            _boto_session = boto3.session.Session()
        return _boto_session


def boto_client(service: str) -> Any:
    """A client for ``service`` from :func:`boto_session`; building clients is not thread-safe."""
    from botocore.config import Config

    session = boto_session()
    with _boto_lock:
        return session.client(service, config=Config(max_pool_connections=MAX_POOL_CONNECTIONS))


_cold = True
_cold_lock = threading.Lock()


@contextlib.contextmanager
def cold_start() -> Iterator[None]:
    """Run the first invocation of the process without the cyclic garbage collector.

    A cold start creates hundreds of thousands of long-lived objects (modules, pydantic
    schemas, botocore's service models and endpoint data) and almost no garbage, yet the
    collector keeps re-scanning them: a visible share of a cold start, in
    full collections that free nothing. The first invocation therefore runs with the
    collector off; afterwards everything it built is moved to the permanent generation
    (``gc.freeze``), which later collections skip, and the collector is back on. Later
    invocations, and a process that had turned the collector off itself, are untouched.
    """
    global _cold
    with _cold_lock:
        first, _cold = _cold, False
    if not first or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


class Runtime:
    """Settings, storage, queue client, sender, application and token verifier of a process.

    ``clock`` (epoch seconds) drives storage expiry and progress coalescing, and
    ``schedule`` runs delayed progress flushes; tests replace both to control time.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        dynamodb: Any | None = None,
        sqs: Any | None = None,
        storage: Storage | None = None,
        sender: Sender | None = None,
        app: Streamer | None = None,
        verifier: TokenVerifier | None = None,
        clock: Callable[[], float] = time.time,
        schedule: Scheduler = thread_timer,
    ) -> None:
        self._settings = settings
        self._dynamodb = dynamodb
        self._sqs = sqs
        self._storage = storage
        self._sender = sender
        self._app = app
        self._verifier = verifier
        self.clock = clock
        self.schedule = schedule
        self._lock = threading.RLock()

    @property
    def settings(self) -> Settings:
        """The settings given, else those of the environment."""
        return self._settings if self._settings is not None else get_settings()

    @property
    def dynamodb(self) -> Any:
        """The low-level DynamoDB client every store shares."""
        with self._lock:
            if self._dynamodb is None:
                self._dynamodb = boto_client("dynamodb")
            return self._dynamodb

    @property
    def storage(self) -> Storage:
        """The three DynamoDB stores, sharing one client."""
        with self._lock:
            if self._storage is None:
                from streamer_core.storage import Storage

                settings = self.settings
                self._storage = Storage(
                    self.dynamodb,
                    env=settings.env,
                    connections_table=settings.connections_table,
                    subscriptions_table=settings.subscriptions_table,
                    requests_table=settings.requests_table,
                    clock=self.clock,
                )
            return self._storage

    @property
    def sqs(self) -> Any:
        """The SQS client the router enqueues with."""
        with self._lock:
            if self._sqs is None:
                self._sqs = boto_client("sqs")
            return self._sqs

    @property
    def sender(self) -> Sender:
        """The management-API sender; 410 answers prune through this runtime's storage."""
        with self._lock:
            if self._sender is None:
                from streamer_handlers._delivery.management import (
                    ConnectionPruner,
                    ManagementSender,
                )

                self._sender = ManagementSender(
                    self.settings.management_endpoint, on_gone=ConnectionPruner(self.storage)
                )
            return self._sender

    @property
    def app(self) -> Streamer:
        """The application named by STREAMER_APP (the demo app by default)."""
        with self._lock:
            if self._app is None:
                from streamer_handlers._app import load_app

                self._app = load_app(self.settings.app)
            return self._app

    @property
    def verifier(self) -> TokenVerifier:
        """The JWT verifier configured by the STREAMER_JWT_* variables."""
        with self._lock:
            if self._verifier is None:
                self._verifier = build_verifier(self.settings)
            return self._verifier

    def queue_url(self) -> str:
        """The work queue's URL; a router without one cannot accept asynchronous work."""
        url = self.settings.queue_url
        if not url:
            raise SettingsError("STREAMER_QUEUE_URL is not set")
        return url


def build_verifier(settings: Settings) -> TokenVerifier:
    """A verifier from the first key source configured: PEM text, a file, a secret, or JWKS.

    A file suits keys baked into a deployment package or mounted by the local stack, where
    putting a multi-line PEM in an environment variable is awkward.
    """
    from streamer_core.auth import KeySet, SecretsManagerKeySource, TokenVerifier

    common: dict[str, Any] = {
        "issuer": settings.jwt_issuer,
        "audience": settings.jwt_audience,
        "allowed_tenants": settings.allowed_tenants,
    }
    if settings.jwt_public_key:
        return TokenVerifier(KeySet.from_secret_string(settings.jwt_public_key), **common)
    if settings.jwt_public_key_file:
        return TokenVerifier(KeySet.from_file(settings.jwt_public_key_file), **common)
    if settings.jwt_public_key_secret:
        return TokenVerifier(SecretsManagerKeySource(settings.jwt_public_key_secret), **common)
    if settings.jwks_url:
        return TokenVerifier(jwks_url=settings.jwks_url, **common)
    raise SettingsError(
        "no JWT key configured: set STREAMER_JWT_PUBLIC_KEY, STREAMER_JWT_PUBLIC_KEY_FILE, "
        "STREAMER_JWT_PUBLIC_KEY_SECRET or STREAMER_JWKS_URL"
    )


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    """The process-wide runtime, created on first use."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime()
        return _runtime


def set_runtime(runtime: Runtime) -> None:
    """Use ``runtime`` for every later invocation in this process."""
    global _runtime
    with _runtime_lock:
        _runtime = runtime


def reset_runtime() -> None:
    """Drop the cached runtime (and settings) so the next invocation rebuilds from the env."""
    global _runtime
    from streamer_handlers._lambda.settings import reset_settings

    with _runtime_lock:
        _runtime = None
    reset_settings()
