"""API Gateway WebSocket, SQS and Lambda-context shapes for calling the handlers directly.

They follow AWS's documented proxy events so the handlers do the same work they do on AWS.
Everything here is plain data (dicts of str/int/bool/None) so a cold-start child process can
receive an event as a Python literal without importing `json` before its clock starts.
"""

from __future__ import annotations

import time
from typing import Any

API_ID = "benchapi01"
STAGE = "bench"
DOMAIN = f"{API_ID}.execute-api.us-east-1.amazonaws.com"
REGION = "us-east-1"


def _request_context(
    route_key: str, event_type: str, connection_id: str, authorizer: dict[str, Any] | None
) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    context: dict[str, Any] = {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": f"ext-{now_ms}",
        "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
        "messageDirection": "IN",
        "stage": STAGE,
        "connectedAt": now_ms,
        "requestTimeEpoch": now_ms,
        "identity": {"sourceIp": "127.0.0.1", "userAgent": "benchmarks"},
        "requestId": f"req-{now_ms}",
        "domainName": DOMAIN,
        "connectionId": connection_id,
        "apiId": API_ID,
    }
    if authorizer is not None:
        context["authorizer"] = {**authorizer, "integrationLatency": 1}
    return context


def connect_event(connection_id: str, token: str) -> dict[str, Any]:
    """`$connect` with the token in the Authorization header and no authorizer in front."""
    headers = {
        "Authorization": f"Bearer {token}",
        "Host": DOMAIN,
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    return {
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "requestContext": _request_context("$connect", "CONNECT", connection_id, None),
        "isBase64Encoded": False,
    }


def message_event(
    connection_id: str, body: str, authorizer: dict[str, Any], route_key: str = "$default"
) -> dict[str, Any]:
    """A MESSAGE route event carrying the authorizer context the gateway keeps per connection."""
    context = _request_context(route_key, "MESSAGE", connection_id, authorizer)
    context["messageId"] = f"msg-{time.perf_counter_ns()}"
    return {"requestContext": context, "body": body, "isBase64Encoded": False}


def disconnect_event(connection_id: str, authorizer: dict[str, Any]) -> dict[str, Any]:
    context = _request_context("$disconnect", "DISCONNECT", connection_id, authorizer)
    context["disconnectStatusCode"] = 1000
    context["disconnectReason"] = "Client-side close frame status not set"
    return {"headers": {"Host": DOMAIN}, "requestContext": context, "isBase64Encoded": False}


def sqs_event(body: str, queue_arn: str, receive_count: int = 1) -> dict[str, Any]:
    now_ms = str(int(time.time() * 1000))
    return {
        "Records": [
            {
                "messageId": f"m-{time.perf_counter_ns()}",
                "receiptHandle": "benchmark-receipt-handle",
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": str(receive_count),
                    "SentTimestamp": now_ms,
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": now_ms,
                },
                "messageAttributes": {},
                "md5OfBody": "0" * 32,
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
        ]
    }


class LambdaContext:
    """The attributes Powertools and the handlers read from Lambda's context object."""

    def __init__(self, function_name: str = "streamer-bench") -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:{function_name}"
        self.memory_limit_in_mb = 3008
        self.aws_request_id = f"{time.perf_counter_ns():032x}"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "bench"
        self._deadline = time.monotonic() + 900

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
