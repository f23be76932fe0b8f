"""API Gateway WebSocket, SQS and Lambda-context shapes for calling the handlers directly.

The WebSocket events and the context are the local gateway's own (`streamer_infra.local._events`).
They follow AWS's documented proxy events so the handlers do the same work they do on AWS.
Everything here is plain data (dicts of str/int/bool/None) so a cold-start child process can
receive an event as a Python literal without importing `json` before its clock starts.
"""

from __future__ import annotations

import time
from typing import Any

from streamer_infra.local import _events as local_events
from streamer_infra.local import _sqs as local_sqs

API_ID = "benchapi01"
STAGE = "bench"
DOMAIN = f"{API_ID}.execute-api.us-east-1.amazonaws.com"
REGION = "us-east-1"


API = local_events.ApiIdentity(api_id=API_ID, stage=STAGE, domain_name=DOMAIN, region=REGION)


def _client(
    connection_id: str,
    headers: dict[str, str] | None = None,
    authorizer: dict[str, Any] | None = None,
) -> local_events.ClientFacts:
    return local_events.ClientFacts(
        connection_id=connection_id,
        connected_at=int(time.time() * 1000),
        source_ip="127.0.0.1",
        user_agent="benchmarks",
        headers=tuple((headers or {}).items()),
        authorizer=None if authorizer is None else {**authorizer, "integrationLatency": 1},
    )


def connect_event(connection_id: str, token: str) -> dict[str, Any]:
    """`$connect` with the token in the Authorization header and no authorizer in front."""
    headers = {
        "Authorization": f"Bearer {token}",
        "Host": DOMAIN,
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    return local_events.connect_event(
        API, _client(connection_id, headers), local_events.aws_style_id()
    )


def message_event(
    connection_id: str, body: str, authorizer: dict[str, Any], route_key: str = "$default"
) -> dict[str, Any]:
    """A MESSAGE route event carrying the authorizer context the gateway keeps per connection."""
    client = _client(connection_id, authorizer=authorizer)
    return local_events.message_event(API, client, route_key=route_key, body=body)


def disconnect_event(connection_id: str, authorizer: dict[str, Any]) -> dict[str, Any]:
    return local_events.disconnect_event(
        API,
        _client(connection_id, authorizer=authorizer),
        status_code=1000,
        reason="Client-side close frame status not set",
    )


def sqs_event(body: str, queue_arn: str, receive_count: int = 1) -> dict[str, Any]:
    """One received message, as the local queue poller hands it to the processor."""
    now_ms = str(int(time.time() * 1000))
    received = {
        "MessageId": f"m-{time.perf_counter_ns()}",
        "ReceiptHandle": "benchmark-receipt-handle",
        "Body": body,
        "Attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": now_ms,
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": now_ms,
        },
        "MD5OfBody": "0" * 32,
    }
    return local_sqs.sqs_event([received], queue_arn=queue_arn, region=REGION)


class LambdaContext(local_events.LambdaContext):
    """The local stack's Lambda context object, as the benchmarks' functions are configured."""

    def __init__(self, function_name: str = "streamer-bench") -> None:
        super().__init__(function_name, timeout_seconds=900, memory_limit_in_mb=3008, region=REGION)
