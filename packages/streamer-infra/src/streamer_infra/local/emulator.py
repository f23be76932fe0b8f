"""The embedded AWS emulator: moto's server, in this process, on a loopback port.

Every DynamoDB request it serves is applied at once (`atomic_dynamodb`), as the service
applies it, for as long as it runs.

One server per process is enough and is what makes restarts cheap: moto keeps its state in
process-wide backends whatever server fronts them, so several servers would only share one
state behind different ports, and handler modules that cached a boto3 client at cold start
would keep talking to a port that no longer answers. Stacks therefore share one server and
reset its state when they start.
"""

from __future__ import annotations

import logging
import threading
import urllib.request

from moto.server import ThreadedMotoServer

from .atomic_dynamodb import install_atomic_dynamodb, uninstall_atomic_dynamodb
from .moto_speedups import install_moto_speedups

__all__ = ["AwsEmulator", "shared_emulator"]

logger = logging.getLogger("streamer.local.emulator")

_lock = threading.Lock()
_shared: AwsEmulator | None = None


class AwsEmulator:
    """moto's threaded server bound to a free loopback port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._server: ThreadedMotoServer | None = None
        self._endpoint_url: str | None = None
        self._atomic = False

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
            install_moto_speedups()
            self._atomic = install_atomic_dynamodb()
            if not self._atomic:
                logger.warning(
                    "this moto has no hook for atomic DynamoDB requests: concurrent "
                    "conditional writes may both succeed here, which DynamoDB never allows"
                )
            server = ThreadedMotoServer(ip_address=self._host, port=self._port, verbose=False)
            try:
                server.start()
            except BaseException:
                self._release_atomic()
                raise
            host, port = server.get_host_and_port()
            self._server = server
            self._endpoint_url = f"http://{host}:{port}"
        return self.endpoint_url

    def reset(self) -> None:
        """Forget every resource, as a fresh account would look."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
            self._endpoint_url = None
            self._release_atomic()

    def _release_atomic(self) -> None:
        if self._atomic:
            self._atomic = False
            uninstall_atomic_dynamodb()


def shared_emulator() -> AwsEmulator:
    """The process-wide emulator, started on first use."""
    global _shared
    with _lock:
        if _shared is None:
            _shared = AwsEmulator()
        _shared.start()
        return _shared
