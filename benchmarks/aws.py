"""AWS resources on moto for benchmarks that call the handlers directly.

Tables come from core's specs (the one source of truth), so the handlers find exactly the
names they would on AWS. Fake credentials and a fixed region keep boto3 from looking for real
ones: no benchmark ever leaves 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from typing import Any

ENV_NAME = "bench"
REGION = "us-east-1"

BASE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    "STREAMER_ENV": ENV_NAME,
    "STREAMER_JWT_ISSUER": "bench",
    "STREAMER_JWT_AUDIENCE": "bench",
    "STREAMER_RATE_LIMIT": str(10**9),
    "STREAMER_DEMO_DELAY": "0",
    "POWERTOOLS_SERVICE_NAME": "streamer",
    "POWERTOOLS_METRICS_NAMESPACE": "Streamer",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}


def client(service: str, endpoint_url: str | None = None) -> Any:
    """A boto3 client with the fake credentials, whatever this process's environment holds."""
    import boto3

    session: Any = boto3.session.Session()
    return session.client(
        service,
        region_name=REGION,
        endpoint_url=endpoint_url,
        aws_access_key_id=BASE_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=BASE_ENV["AWS_SECRET_ACCESS_KEY"],
    )


def provision(endpoint_url: str | None = None) -> dict[str, str]:
    """Create the tables and queues; return the STREAMER_* variables that point at them."""
    from streamer_core.storage import create_tables

    tables = create_tables(client("dynamodb", endpoint_url), ENV_NAME)
    sqs = client("sqs", endpoint_url)
    dead = sqs.create_queue(QueueName="streamer-bench-dead-letter")["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue = sqs.create_queue(
        QueueName="streamer-bench-work",
        Attributes={
            "RedrivePolicy": f'{{"deadLetterTargetArn":"{dead_arn}","maxReceiveCount":"5"}}'
        },
    )["QueueUrl"]
    env = {
        "STREAMER_CONNECTIONS_TABLE": tables["connections"],
        "STREAMER_SUBSCRIPTIONS_TABLE": tables["subscriptions"],
        "STREAMER_REQUESTS_TABLE": tables["requests"],
        "STREAMER_QUEUE_URL": queue,
    }
    if endpoint_url:
        env["AWS_ENDPOINT_URL"] = endpoint_url
    return env


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's threaded server on a free loopback port, for child processes that cannot share
    an in-process mock."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


class _AcceptAll(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextlib.contextmanager
def management_sink() -> Iterator[str]:
    """A management API that accepts every post: for handlers called without a gateway."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AcceptAll)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/bench"
    finally:
        server.shutdown()
        server.server_close()
