"""`LocalStack`: the emulator, the resources, the gateway and the queue poller as one unit.

The handlers are configured only through their environment, exactly as on AWS: the stack
builds it with the deployment's own function (`deployment.function_environment` of the
handlers) plus the few variables that must differ locally (`local_only_environment`). The
functions run either on threads of this process, or from the built Lambda archive in worker
processes of their own (`from_build`, `processes`). In this process the stack sets the
variables before importing
the handlers and puts the old values back when it stops; that environment is process-wide,
hence one running stack per process.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web
from streamer_core.auth import TokenIssuer
from streamer_handlers.deployment import Settings, function_environment

from streamer_infra._queue_rules import visibility_timeout
from streamer_infra.local._affinity import pin_to_one_cpu
from streamer_infra.local._collector import server_thresholds
from streamer_infra.local._emulator import shared_emulator
from streamer_infra.local._events import ApiIdentity
from streamer_infra.local._gateway import Gateway
from streamer_infra.local._invoker import Invoker, ThreadInvoker
from streamer_infra.local._keys import DEFAULT_STATE_DIR, DEV_ISSUER, DevKeys, load_or_create_keys
from streamer_infra.local._limits import GatewayLimits
from streamer_infra.local._processes import ProcessInvoker
from streamer_infra.local._provision import Provisioned, aws_client, provision
from streamer_infra.local._sqs import QueueEventSource
from streamer_infra.local._wiring import FunctionSpecLike, wire
from streamer_infra.local._xray import TraceSegment, XRaySink

if TYPE_CHECKING:
    from streamer_infra.local._console import Console

__all__ = [
    "LocalStack",
    "LocalStackConfig",
    "StackAlreadyRunningError",
    "local_only_environment",
]

DEV_RESERVED_CONCURRENCY = 10
"""The reserved concurrency of the `dev` deployment (`aws.config.PROFILES`), which the local
queue consumer stands for; a test keeps the two equal."""

_running = threading.Lock()


class StackAlreadyRunningError(RuntimeError):
    """A second stack would overwrite the first one's environment."""


@dataclass(frozen=True)
class LocalStackConfig:
    """How to run the stack; the defaults are `streamer dev`'s."""

    host: str = "127.0.0.1"
    port: int = 8080
    """0 picks a free port."""
    stage: str = "local"
    env: str = "local"
    app: str | None = None
    """`module:attr` of the Streamer app; None keeps the handlers' default (the demo app)."""
    region: str = "us-east-1"
    limits: GatewayLimits = field(default_factory=GatewayLimits)
    state_dir: Path = DEFAULT_STATE_DIR
    keys: DevKeys | None = None
    """None loads (or creates) the development pair under `state_dir`."""
    jwt_issuer: str | None = DEV_ISSUER
    allowed_tenants: Sequence[str] | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    """Extra variables for the handlers (STREAMER_DEMO_DELAY, STREAMER_RATE_LIMIT, ...)."""
    max_receive_count: int = Settings().max_receive_count
    visibility_timeout: int | None = None
    """None: six times the queue function's timeout, the deployment's rule (a job is never
    delivered twice while it runs); tests shorten it to see retries within seconds."""
    sqs_batch_size: int = 10
    sqs_concurrency: int = DEV_RESERVED_CONCURRENCY
    function_concurrency: int = 64
    functions: Sequence[FunctionSpecLike] | None = None
    """None deploys `streamer_handlers.deployment.function_specs()` for the configured app."""
    pin_cpu: bool = False
    """Keep every thread of this process on one CPU (`affinity`): `streamer dev` does, a
    library caller (a test run, say) keeps the process as it found it."""
    server_gc: bool = False
    """Collect garbage on a server's thresholds (`collector`) while the stack runs:
    `streamer dev` does; a library caller keeps the process's own, restored at stop."""
    management: Literal["direct", "http"] = "direct"
    """How the handlers reach clients: "direct" hands each batch of frames to the gateway
    in-process (`direct_sender`); "http" sends every frame through boto3's management-API
    client and the gateway's HTTP endpoint, one call per connection, as on AWS. A stack
    running `from_build` always uses "http": its functions live in other processes."""
    from_build: bool = False
    """Run the functions from the built Lambda archive, in worker processes that import only
    from the archive and the runtime's packages, as Lambda does (`processes`)."""
    archive: Path | None = None
    """The archive `from_build` runs; None builds this machine's twin of the deployment's
    archive, or reuses it when nothing changed since it was built."""
    on_trace: Callable[[TraceSegment], None] | None = None
    """Called with every trace segment the functions send to the local X-Ray daemon."""
    console: bool | None = False
    """Serve the developer console (`console`) at `/` of the gateway's port: True serves
    it, None serves it only while `host` is a loopback address (`streamer dev`'s default),
    False never. It mints tokens for any user and closes any connection."""


class LocalStack:
    """`async with LocalStack(config) as stack:` serves until the block ends."""

    def __init__(self, config: LocalStackConfig | None = None) -> None:
        self.config = config or LocalStackConfig()
        self._saved_env: dict[str, str | None] = {}
        self._runner: web.AppRunner | None = None
        self._gateway: Gateway | None = None
        self._queue_source: QueueEventSource | None = None
        self._invoker: Invoker | None = None
        self._keys: DevKeys | None = None
        self._issuer: TokenIssuer | None = None
        self._resources: Provisioned | None = None
        self._endpoint_url = ""
        self._port = 0
        self._owns_lock = False
        self._gc_thresholds: tuple[int, int, int] | None = None
        self._socket: socket.socket | None = None
        self._xray: XRaySink | None = None
        self._console: Console | None = None

    # -- what callers use -------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port

    @property
    def ws_url(self) -> str:
        return f"ws://{self._url_host}:{self._port}/{self.config.stage}"

    @property
    def management_url(self) -> str:
        return f"http://{self._url_host}:{self._port}/{self.config.stage}"

    @property
    def console(self) -> Console | None:
        """The console, when this stack serves one."""
        return self._console

    @property
    def console_url(self) -> str | None:
        if self._console is None:
            return None
        return f"http://{self._url_host}:{self._port}/"

    @property
    def xray(self) -> XRaySink | None:
        """The local X-Ray daemon, when the functions run from the archive."""
        return self._xray

    @property
    def invoker(self) -> Invoker:
        if self._invoker is None:
            raise RuntimeError("the stack is not running")
        return self._invoker

    @property
    def aws_endpoint_url(self) -> str:
        return self._endpoint_url

    @property
    def resources(self) -> Provisioned:
        if self._resources is None:
            raise RuntimeError("the stack is not running")
        return self._resources

    @property
    def gateway(self) -> Gateway:
        if self._gateway is None:
            raise RuntimeError("the stack is not running")
        return self._gateway

    @property
    def issuer(self) -> TokenIssuer:
        if self._issuer is None:
            if self._keys is None:
                raise RuntimeError("the stack is not running")
            self._issuer = self._keys.issuer(self.config.jwt_issuer)
        return self._issuer

    def token(
        self, sub: str, tenant: str, permissions: Iterable[str] = (), *, ttl: float = 3600
    ) -> str:
        """A token the running stack accepts, signed with its development key."""
        return self.issuer.issue(sub, tenant, permissions, ttl=ttl)

    def aws_client(self, service: str) -> Any:
        """A boto3 client on the embedded emulator (to inspect tables and queues)."""
        return aws_client(service, self._endpoint_url, self.config.region)

    @property
    def _url_host(self) -> str:
        host = self.config.host
        if host in ("0.0.0.0", ""):
            return "127.0.0.1"
        if host == "::":
            return "[::1]"
        return f"[{host}]" if ":" in host else host

    # -- lifecycle ----------------------------------------------------------------------
    async def __aenter__(self) -> LocalStack:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        if not _running.acquire(blocking=False):
            raise StackAlreadyRunningError("a LocalStack is already running in this process")
        self._owns_lock = True
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        config = self.config
        if config.pin_cpu:
            pin_to_one_cpu()
        if config.server_gc:
            self._gc_thresholds = server_thresholds()
        emulator = await asyncio.to_thread(shared_emulator)
        await asyncio.to_thread(emulator.reset)
        self._endpoint_url = emulator.endpoint_url
        keys: DevKeys = (
            config.keys
            if config.keys is not None
            else await asyncio.to_thread(load_or_create_keys, config.state_dir)
        )
        self._keys = keys

        # Bound before anything else: the management endpoint the handlers are given must
        # carry the real port, and port 0 only becomes one once bound.
        sock = _bind(config.host, config.port)
        self._socket = sock
        self._port = sock.getsockname()[1]

        resources = await asyncio.to_thread(
            provision,
            self._endpoint_url,
            env=config.env,
            region=config.region,
            jwt_public_key_pem=keys.public_pem,
            max_receive_count=config.max_receive_count,
            visibility_timeout=config.visibility_timeout or 30,
        )
        self._resources = resources
        specs = config.functions if config.functions is not None else _handler_specs(config.app)
        environment = {
            **self._function_environment(resources, specs),
            **local_only_environment(self._endpoint_url, config.region),
            **config.environment,
        }
        self._apply_environment(environment)
        wiring = wire(
            specs,
            concurrency=config.function_concurrency,
            sqs_concurrency=config.sqs_concurrency,
            in_process=not config.from_build,
        )
        prefix = f"streamer-{config.env}"
        if config.from_build:
            self._invoker = await self._archive_invoker(environment, prefix)
        else:
            self._invoker = ThreadInvoker(function_prefix=prefix, region=config.region)
        invoker = self._invoker
        if config.console is not False:
            from streamer_infra.local._console import Console, console_enabled, is_loopback

            if console_enabled(config.host, config.console):
                self._console = Console(self, loopback_only=is_loopback(config.host))
                invoker = self._console.wrap(invoker)
        api = ApiIdentity(
            api_id=uuid.uuid4().hex[:10],
            stage=config.stage,
            domain_name=f"{self._url_host}:{self._port}",
            region=config.region,
        )
        self._gateway = Gateway(api, wiring.routes, invoker, config.limits)
        if self._console is not None:
            self._console.mount(self._gateway)
        self._runner = web.AppRunner(
            self._gateway.app, handle_signals=False, access_log=None, shutdown_timeout=2.0
        )
        await self._runner.setup()
        # A burst of a thousand simultaneous connects must not overflow the accept queue.
        await web.SockSite(self._runner, sock, backlog=2048).start()
        if config.management == "direct" and not config.from_build:
            _use_direct_sender(self._gateway, asyncio.get_running_loop())
        if self._console is not None:
            self._console.start()

        if wiring.queue_function is not None and config.visibility_timeout is None:
            seconds = visibility_timeout(int(wiring.queue_function.timeout))
            await asyncio.to_thread(
                self.aws_client("sqs").set_queue_attributes,
                QueueUrl=resources.queue_url,
                Attributes={"VisibilityTimeout": str(seconds)},
            )
        if wiring.queue_function is not None:
            self._queue_source = QueueEventSource(
                sqs=self.aws_client("sqs"),
                queue_url=resources.queue_url,
                queue_arn=resources.queue_arn,
                region=config.region,
                function=wiring.queue_function,
                invoker=invoker,
                batch_size=config.sqs_batch_size,
                max_concurrency=config.sqs_concurrency,
            )
            self._queue_source.start()

    async def stop(self) -> None:
        """Close clients with 1001, run their `$disconnect`s, then release everything."""
        try:
            if self._gateway is not None:
                await self._gateway.shutdown()
            if self._queue_source is not None:
                await self._queue_source.stop()
            if self._console is not None:
                await self._console.close()
            if self._runner is not None:
                await self._runner.cleanup()
            if isinstance(self._invoker, ProcessInvoker):
                await self._invoker.aclose()
            elif self._invoker is not None:
                self._invoker.shutdown()
        finally:
            if self._xray is not None:
                self._xray.close()
                self._xray = None
            if self._socket is not None:
                # Already closed by the site when it served; not yet when start failed early.
                self._socket.close()
                self._socket = None
            self._gateway = None
            self._console = None
            self._queue_source = None
            self._runner = None
            self._invoker = None
            _reset_handler_caches()
            self._restore_environment()
            if self._gc_thresholds is not None:
                gc.set_threshold(*self._gc_thresholds)
                self._gc_thresholds = None
            if self._owns_lock:
                self._owns_lock = False
                _running.release()

    # -- environment ----------------------------------------------------------------------
    def _function_environment(
        self, resources: Provisioned, specs: Sequence[FunctionSpecLike]
    ) -> dict[str, str]:
        """The deployment's environment contract, with this stack's resources."""
        config = self.config
        queue_timeouts = [int(spec.timeout) for spec in specs if spec.trigger == "sqs"]
        environment = function_environment(
            config.env,
            tables=resources.tables,
            queue_url=resources.queue_url,
            management_endpoint=self.management_url,
            jwt_public_key_secret=resources.jwt_secret_id,
            app=config.app,
            jwt_issuer=config.jwt_issuer,
            allowed_tenants=config.allowed_tenants,
            max_receive_count=config.max_receive_count,
        )
        if queue_timeouts:  # otherwise the handlers' own default, as on AWS
            environment["STREAMER_PROCESSOR_TIMEOUT"] = str(max(queue_timeouts))
        return environment

    async def _archive_invoker(self, environment: Mapping[str, str], prefix: str) -> Invoker:
        """Worker processes that run the archive, and the X-Ray daemon their tracer sends to."""
        from streamer_infra.local._archive_runner import archive_runtime

        self._xray = XRaySink(on_segment=self.config.on_trace)
        await self._xray.start()
        runtime = await asyncio.to_thread(
            archive_runtime,
            self.config.archive,
            self.config.state_dir,
            environment,
            self._xray.address,
            self.config.app,
        )
        return ProcessInvoker(runtime, function_prefix=prefix, region=self.config.region)

    def _apply_environment(self, values: Mapping[str, str]) -> None:
        # Values the handlers would otherwise pick up from the caller's shell.
        shadowed = ("STREAMER_JWT_PUBLIC_KEY", "STREAMER_JWKS_URL", "STREAMER_JWT_AUDIENCE")
        for name in (*values, *shadowed):
            if name not in self._saved_env:
                self._saved_env[name] = os.environ.get(name)
        for name in shadowed:
            if name not in values:
                os.environ.pop(name, None)
        os.environ.update(values)
        _reset_handler_caches()

    def _restore_environment(self) -> None:
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _handler_specs(app: str | None) -> Sequence[FunctionSpecLike]:
    """The functions of `app` (None: the handlers' default app, not the caller's shell's)."""
    deployment = importlib.import_module("streamer_handlers.deployment")
    application = deployment.load_app(app or deployment.Settings().app)
    specs: Sequence[FunctionSpecLike] = deployment.function_specs(application)
    return specs


def _use_direct_sender(gateway: Gateway, loop: asyncio.AbstractEventLoop) -> None:
    """Give the handlers' runtime a sender that writes to `gateway`'s sockets directly."""
    from streamer_handlers.deployment import ConnectionPruner, Runtime, get_runtime, set_runtime

    from streamer_infra.local._direct_sender import GatewaySender

    def prune(connection_id: str) -> None:
        # The runtime in force when the 410 happens, with the storage it has then.
        ConnectionPruner(get_runtime().storage)(connection_id)

    set_runtime(Runtime(sender=GatewaySender(gateway, loop, on_gone=prune)))


def _reset_handler_caches() -> None:
    """Drop what a warm handler process cached (settings, clients, keys) from an old run."""
    try:
        deployment = importlib.import_module("streamer_handlers.deployment")
    except ImportError:
        return
    deployment.reset_runtime()


def local_only_environment(endpoint_url: str, region: str) -> dict[str, str]:
    """Every way the local functions' environment differs from the deployment's, and why.

    - ``AWS_ENDPOINT_URL`` and the dummy credentials: the AWS services are the embedded
      emulator, which accepts any key.
    - ``AWS_REGION``/``AWS_DEFAULT_REGION``: Lambda sets the region itself; a process here
      has to be told.
    - ``POWERTOOLS_METRICS_DISABLED``: on AWS the metrics are EMF lines that CloudWatch turns
      into metrics; on a terminal they are noise between the logs.
    """
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
