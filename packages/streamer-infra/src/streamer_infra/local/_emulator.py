"""The embedded AWS emulator: moto's server, in this process, on a loopback port.

Every DynamoDB request it serves is applied at once (`atomic_dynamodb`), as the service
applies it, and takes moto's faster paths (`moto_speedups`). Both change moto's classes, so
they are kept to the emulator (`moto_patches`): installed by `start`, undone by the last
`stop` of any emulator in the process, and acting only on the threads that answer its
requests. Between a start and that stop, moto used in-process elsewhere (`mock_aws`) still
behaves as moto ships; after it, moto's methods are moto's own again.

One server per process is enough and is what makes restarts cheap: moto keeps its state in
process-wide backends whatever server fronts them, so several servers would only share one
state behind different ports, and handler modules that cached a boto3 client at cold start
would keep talking to a port that no longer answers. Stacks therefore share one server and
reset its state when they start; it runs, patched, until the process ends or until
`stop_shared_emulator` (a test that must see moto's own methods again calls it; the next stack
starts it anew on another port).
"""

from __future__ import annotations

import logging
import threading
import urllib.request
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

from streamer_infra.local._atomic_dynamodb import ATOMIC_DYNAMODB
from streamer_infra.local._moto_patches import MotoPatches, serving
from streamer_infra.local._moto_speedups import MOTO_SPEEDUPS

__all__ = ["AwsEmulator", "shared_emulator", "stop_shared_emulator"]

logger = logging.getLogger("streamer.local.emulator")

_lock = threading.Lock()
_shared: AwsEmulator | None = None


class _Server:
    """moto's WSGI application on werkzeug's threaded server, as moto's `ThreadedMotoServer`
    runs it, but with every request answered inside `serving` so the patches act on it."""

    def __init__(self, host: str, port: int) -> None:
        app = DomainDispatcherApplication(create_backend_app)

        def serve(environ: dict[str, Any], start_response: Any) -> Any:
            # moto builds the whole body before it returns, so no work escapes the block.
            with serving():
                return app(environ, start_response)

        # Bound here rather than on the server's thread, so that a port in use fails the
        # caller; werkzeug reports it on stderr and exits, which must not end the process.
        try:
            self._server: BaseWSGIServer = make_server(
                host, port, serve, threaded=True, request_handler=MotoRequestHandler
            )
        except SystemExit as exited:
            raise OSError(f"the AWS emulator cannot listen on {host}:{port}") from exited
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="aws-emulator", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()


_PATCHES: tuple[tuple[MotoPatches, int, str], ...] = (
    (
        ATOMIC_DYNAMODB,
        logging.WARNING,
        "this moto has no hook for atomic DynamoDB requests: concurrent conditional writes "
        "may both succeed here, which DynamoDB never allows",
    ),
    (
        MOTO_SPEEDUPS,
        logging.DEBUG,
        "this moto lacks a hook of the emulator's fast paths: those stay moto's own",
    ),
)
"""What the emulator installs, and what to say when this moto lacks a hook."""


class AwsEmulator:
    """moto's threaded server bound to a free loopback port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._endpoint_url: str | None = None

    @property
    def endpoint_url(self) -> str:
        if self._endpoint_url is None:
            raise RuntimeError("the AWS emulator is not running")
        return self._endpoint_url

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> str:
        """Start the server (idempotent) and answer its endpoint URL."""
        if self._server is None:
            # werkzeug logs every request at INFO: thousands of lines per test run.
            logging.getLogger("werkzeug").setLevel(logging.ERROR)
            installed: list[MotoPatches] = []
            try:
                for patches, level, missing in _PATCHES:
                    complete = patches.install()
                    installed.append(patches)
                    if not complete:
                        logger.log(level, missing)
                server = _Server(self._host, self._port)
                server.start()
            except BaseException:
                for patches in reversed(installed):
                    patches.uninstall()
                raise
            host, port = server.address
            self._server = server
            self._endpoint_url = f"http://{host}:{port}"
        return self.endpoint_url

    def reset(self) -> None:
        """Forget every resource, as a fresh account would look."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def stop(self) -> None:
        """Stop serving (idempotent); the last emulator to stop undoes the patches."""
        if self._server is not None:
            server, self._server = self._server, None
            self._endpoint_url = None
            try:
                server.stop()
            finally:
                _release_patches()


def _release_patches() -> None:
    for patches, _, _ in reversed(_PATCHES):
        patches.uninstall()


def shared_emulator() -> AwsEmulator:
    """The process-wide emulator, started on first use."""
    global _shared
    with _lock:
        if _shared is None:
            _shared = AwsEmulator()
        _shared.start()
        return _shared


def stop_shared_emulator() -> None:
    """Stop the process-wide emulator if it runs; the next `shared_emulator` starts it anew."""
    with _lock:
        if _shared is not None:
            _shared.stop()
