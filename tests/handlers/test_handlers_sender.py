"""ManagementSender: concurrent fan-out, 410 pruning, bounded retries."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.stub import Stubber
from streamer_handlers.deployment import ManagementSender


def _error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PostToConnection",
    )


class ScriptedClient:
    """Fails each connection with the scripted errors, in order, then succeeds."""

    def __init__(self, script: dict[str, list[Exception]] | None = None) -> None:
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.calls: list[str] = []
        self.threads: set[str] = set()
        self.lock = threading.Lock()

    def post_to_connection(self, ConnectionId: str, Data: bytes) -> dict[str, Any]:
        with self.lock:
            self.calls.append(ConnectionId)
            self.threads.add(threading.current_thread().name)
            errors = self.script.get(ConnectionId, [])
            error = errors.pop(0) if errors else None
        if error is not None:
            raise error
        assert json.loads(Data) == {"type": "pong"}
        return {}


def _sender(client: Any, pruned: list[str], **kwargs: Any) -> tuple[ManagementSender, list[float]]:
    sleeps: list[float] = []
    sender = ManagementSender(
        None,
        client=client,
        on_gone=pruned.append,
        sleep=sleeps.append,
        jitter=lambda: 0.5,
        **kwargs,
    )
    return sender, sleeps


def test_fan_out_delivers_to_every_connection_on_worker_threads():
    client = ScriptedClient()
    sender, _ = _sender(client, [])
    ids = [f"c{i}" for i in range(50)]
    report = sender.send(ids, '{"type":"pong"}')
    assert sorted(report.delivered) == sorted(ids)
    assert report.gone == report.failed == ()
    assert sorted(client.calls) == sorted(ids)
    assert all(name.startswith("streamer-send") for name in client.threads)


def test_gone_connections_are_pruned_once_and_never_retried(capsys):
    from streamer_handlers._lambda.observability import flush_metrics

    flush_metrics()
    capsys.readouterr()
    client = ScriptedClient({"dead": [_error("GoneException", 410)]})
    pruned: list[str] = []
    sender, sleeps = _sender(client, pruned)
    report = sender.send(["alive", "dead", "dead"], '{"type":"pong"}')
    assert report.delivered == ("alive",)
    assert report.gone == ("dead",)
    assert pruned == ["dead"]
    assert client.calls.count("dead") == 1
    assert sleeps == []
    flush_metrics()
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "_aws" in line]
    assert metrics[-1]["StaleConnectionsPruned"] == [1.0]


def test_throttling_is_retried_with_growing_jittered_backoff():
    throttled = [_error("LimitExceededException", 429), _error("InternalServerError", 500)]
    client = ScriptedClient({"busy": throttled})
    sender, sleeps = _sender(client, [], base_delay=0.1, max_delay=1.0)
    report = sender.send(["busy"], '{"type":"pong"}')
    assert report.delivered == ("busy",)
    assert client.calls == ["busy", "busy", "busy"]
    assert sleeps == [pytest.approx(0.05), pytest.approx(0.1)]


def test_retries_are_bounded():
    errors = [EndpointConnectionError(endpoint_url="https://x")] * 10
    client = ScriptedClient({"down": errors})
    sender, sleeps = _sender(client, [], max_attempts=3)
    report = sender.send(["down"], '{"type":"pong"}')
    assert report.failed == ("down",)
    assert len(client.calls) == 3
    assert len(sleeps) == 2


def test_client_errors_that_cannot_succeed_are_not_retried():
    client = ScriptedClient({"big": [_error("PayloadTooLargeException", 413)]})
    sender, sleeps = _sender(client, [])
    assert sender.send(["big"], '{"type":"pong"}').failed == ("big",)
    assert client.calls == ["big"]
    assert sleeps == []


def test_a_failing_prune_does_not_break_delivery():
    client = ScriptedClient({"dead": [_error("GoneException", 410)]})

    def broken(connection_id: str) -> None:
        raise RuntimeError("dynamodb down")

    sender = ManagementSender(None, client=client, on_gone=broken)
    report = sender.send(["dead", "alive"], '{"type":"pong"}')
    assert report.gone == ("dead",)
    assert report.delivered == ("alive",)


def test_no_endpoint_is_a_configuration_error():
    with pytest.raises(ValueError, match="STREAMER_MANAGEMENT_ENDPOINT"):
        ManagementSender(None)


def test_real_boto3_client_gone_exception_prunes():
    pruned: list[str] = []
    endpoint = "https://abc.execute-api.us-east-1.amazonaws.com/test"
    sender = ManagementSender(endpoint, on_gone=pruned.append)
    client = sender.client
    assert client.meta.endpoint_url == endpoint
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "post_to_connection",
            service_error_code="GoneException",
            service_message="",
            http_status_code=410,
            expected_params={"ConnectionId": "gone=", "Data": b'{"type":"pong"}'},
        )
        stubber.add_response(
            "post_to_connection",
            {},
            expected_params={"ConnectionId": "live=", "Data": b'{"type":"pong"}'},
        )
        report = sender.send(["gone="], '{"type":"pong"}')
        assert report.gone == ("gone=",)
        assert sender.send(["live="], '{"type":"pong"}').delivered == ("live=",)
        stubber.assert_no_pending_responses()
    assert pruned == ["gone="]
    assert client.meta.service_model.service_name == "apigatewaymanagementapi"
