"""Tokens over their whole life: expiry, key rotation, a tenant revoked, and never in a log.

Identity is verified once, at ``$connect``; everything after trusts what that check
attached to the connection. So what matters is that every way a token stops being good
(it expires, its signing key is rotated out, its tenant is revoked) is refused at the next
connect, with the status API Gateway would answer (401, or 403 for the tenant), while the
new key or a fresh token is accepted at once. Whatever happens, a token never reaches a log
line: the suite-wide watch in conftest.py scans every phase, and the last test here drives
tokens through every path that logs, to show the watch sees those lines.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, tzinfo
from typing import Any

import jwt
import pytest
from reliability_support import (
    MINTED,
    Harness,
    LambdaContext,
    LogTap,
    authorize,
    authorizer_event,
    build_harness,
    connect_event,
    fuzz_app,
    policy_effect,
)
from streamer_core.auth import TokenIssuer, generate_key_pair
from streamer_handlers import ActionError, ProgressReporter, Request
from streamer_handlers.deployment import reset_runtime
from streamer_handlers.functions import connect

LEEWAY_SECONDS = 30  # the verifier's default clock skew allowance


def connect_route_status(token: str) -> int:
    """``$connect`` without an authorizer in front: the route verifies the token itself."""
    response = connect.handler(
        connect_event("conn-direct=", {"Authorization": f"Bearer {token}"}, None), LambdaContext()
    )
    return int(response["statusCode"])


def gateway_status(token: str) -> int:
    """What API Gateway answers the upgrade with, given the authorizer's verdict."""
    try:
        policy = authorize(token)
    except Exception as error:
        if str(error) != "Unauthorized":
            raise
        return 401
    return 200 if policy_effect(policy) == "Allow" else 403


@pytest.fixture
def harness(aws: dict[str, Any], signing_keys: tuple[str, str], installed_runtime: None) -> Harness:
    return build_harness(aws, signing_keys, fuzz_app())


def later_clock(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Move the clock the JWT library checks ``exp`` against ``seconds`` into the future."""

    class Later(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Any:
            return datetime.now(tz) + timedelta(seconds=seconds)

    monkeypatch.setattr(jwt.api_jwt, "datetime", Later)


def test_an_expired_token_is_refused_at_connect(harness: Harness) -> None:
    """Past ``exp`` (beyond the leeway) a token opens nothing, with or without an authorizer."""
    expired = harness.issuer.issue("alice", "acme", ttl=-(LEEWAY_SECONDS + 60))
    fresh = harness.issuer.issue("alice", "acme", ttl=600)

    assert gateway_status(expired) == 401
    assert connect_route_status(expired) == 401
    assert gateway_status(fresh) == 200
    assert connect_route_status(fresh) == 200
    stored = harness.runtime.storage.connections.list_by_user("acme", "alice").items
    assert [c.connection_id for c in stored] == ["conn-direct="]


def test_a_token_expiring_mid_connection_ends_at_the_next_connect(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The open connection keeps its verified identity; reconnecting needs a fresh token.

    API Gateway runs the authorizer once per connection, and the router trusts the context
    it attached (no per-message verification), so a connection outlives its token up to the
    gateway's two-hour limit. The expired token itself must open nothing more.
    """
    token = harness.issuer.issue("bob", "acme", ttl=120)
    policy = authorize(token)
    assert policy_effect(policy) == "Allow"
    connection_id = harness.connect("bob", "acme")

    later_clock(monkeypatch, 120 + LEEWAY_SECONDS + 60)

    pong = harness.send(connection_id, "ping", id="still-open")
    assert (pong["type"], pong["request_id"]) == ("pong", "still-open")
    assert gateway_status(token) == 401
    assert connect_route_status(token) == 401
    renewed = harness.issuer.issue("bob", "acme", ttl=3600 * 3)
    assert gateway_status(renewed) == 200


def test_rotated_keys_refuse_the_removed_kid_and_accept_the_new_one(
    aws: dict[str, Any], signing_keys: tuple[str, str], installed_runtime: None, log_tap: LogTap
) -> None:
    """A rotation through the key secret: overlap first, then the old kid is gone.

    Each step is a cold start (a new runtime reading the secret), which is when a rotated
    secret reaches a Lambda; a warm one follows within the key cache's lifetime.
    """
    old_private, old_public = generate_key_pair("ES256")
    new_private, new_public = generate_key_pair("RS256")
    old_issuer = TokenIssuer(old_private, algorithm="ES256", kid="2026-01")
    new_issuer = TokenIssuer(new_private, algorithm="RS256", kid="2026-02")
    secrets = aws["secretsmanager"]
    secret_id = f"streamer/{aws['env']}/jwt-public-key"
    secrets.create_secret(Name=secret_id, SecretString=json.dumps({"2026-01": old_public}))

    def cold_start(keys: dict[str, str]) -> tuple[int, int]:
        secrets.put_secret_value(SecretId=secret_id, SecretString=json.dumps(keys))
        reset_runtime()
        build_harness(
            aws, signing_keys, fuzz_app(), jwt_public_key=None, jwt_public_key_secret=secret_id
        )
        old_token = old_issuer.issue("carol", "acme")
        new_token = new_issuer.issue("carol", "acme")
        return gateway_status(old_token), gateway_status(new_token)

    assert cold_start({"2026-01": old_public}) == (200, 401)
    assert cold_start({"2026-01": old_public, "2026-02": new_public}) == (200, 200)
    assert cold_start({"2026-02": new_public}) == (401, 200)
    assert connect_route_status(old_issuer.issue("carol", "acme")) == 401
    assert connect_route_status(new_issuer.issue("carol", "acme")) == 200
    assert '"reason":"unknown_key"' in log_tap.text()


def test_a_revoked_tenant_is_refused_with_403(
    aws: dict[str, Any], signing_keys: tuple[str, str], installed_runtime: None
) -> None:
    """Shrinking STREAMER_ALLOWED_TENANTS refuses the removed tenant (403), not the others."""
    harness = build_harness(
        aws, signing_keys, fuzz_app(), allowed_tenants=frozenset({"acme", "globex"})
    )
    globex = harness.issuer.issue("gus", "globex")
    acme = harness.issuer.issue("ann", "acme")
    assert (gateway_status(globex), gateway_status(acme)) == (200, 200)

    reset_runtime()
    build_harness(aws, signing_keys, fuzz_app(), allowed_tenants=frozenset({"acme"}))

    assert gateway_status(globex) == 403
    assert connect_route_status(globex) == 403
    assert gateway_status(acme) == 200
    assert gateway_status(harness.issuer.issue("gus", "globex")) == 403


def token_app() -> Any:
    """Actions that carry the caller's token into the places errors are logged from."""
    from streamer_core import ErrorCode
    from streamer_handlers import Streamer

    app = Streamer()

    @app.action("leak.sync")
    def leak_sync(request: Request) -> Any:
        raise RuntimeError(f"cannot use {request.payload['token']}")

    @app.action("leak.refused")
    def leak_refused(request: Request) -> Any:
        raise ActionError(ErrorCode.VALIDATION_ERROR, f"bad token {request.payload['token']}")

    @app.action("leak.job", asynchronous=True)
    def leak_job(request: Request, progress: ProgressReporter) -> Any:
        progress.report(10, f"using {request.payload['token']}")
        raise RuntimeError(f"job failed with {request.payload['token']}")

    return app


def test_tokens_sent_through_every_logging_path_never_reach_a_log_line(
    aws: dict[str, Any],
    signing_keys: tuple[str, str],
    installed_runtime: None,
    log_tap: LogTap,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Refusals, crashes and failed jobs whose messages quote a token log it redacted.

    The positive checks matter as much as the negative one: they show the lines that would
    have carried the token were written and seen by the watch, so "no token found" is not
    the result of looking at nothing.
    """
    harness = build_harness(aws, signing_keys, token_app())
    good = harness.issuer.issue("dave", "acme")
    expired = harness.issuer.issue("dave", "acme", ttl=-3600)
    forged = TokenIssuer(generate_key_pair("ES256")[0], algorithm="ES256").issue("dave", "acme")

    for token in (expired, forged):
        assert gateway_status(token) == 401
        assert connect_route_status(token) == 401
    for headers in (
        {"Sec-WebSocket-Protocol": f"streamer, {expired}"},
        {"Authorization": f"Bearer {forged} trailing"},
    ):
        with pytest.raises(Exception, match="Unauthorized"):
            connect.handler(authorizer_event(headers), LambdaContext())
    query_event = connect_event("conn-query=", {}, None)
    query_event["queryStringParameters"] = {"token": good}
    assert connect.handler(query_event, LambdaContext())["statusCode"] == 200

    connection_id = harness.connect("dave", "acme")
    crashed = harness.send(connection_id, "leak.sync", {"token": good}, id="sync-1")
    assert (crashed["type"], crashed["code"]) == ("error", "INTERNAL_ERROR")
    assert good not in json.dumps(crashed)
    refused = harness.send(connection_id, "leak.refused", {"token": good}, id="refused-1")
    assert refused["code"] == "VALIDATION_ERROR"
    assert harness.send(connection_id, "leak.job", {"token": good}, id="job-1")["type"] == (
        "acknowledgment"
    )
    harness.drain()
    ends = [f for f in harness.sender.frames(connection_id) if f["type"] == "error"]
    assert [(f["request_id"], f["code"]) for f in ends] == [("job-1", "INTERNAL_ERROR")]

    logged = log_tap.text()
    out, err = capfd.readouterr()
    sys.stdout.write(out)  # handed back, so the suite-wide watch scans it as well
    sys.stderr.write(err)
    assert '"message":"connection refused"' in logged
    assert '"reason":"expired"' in logged
    assert '"reason":"bad_signature"' in logged
    assert '"message":"action failed"' in logged
    assert "[REDACTED]" in logged  # the crash messages quoted the token and were scrubbed
    assert len(MINTED) >= 3
    assert MINTED.leaks(logged) == []
    assert MINTED.leaks(out + err) == []
