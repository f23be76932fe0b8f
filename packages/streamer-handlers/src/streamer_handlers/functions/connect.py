"""``$connect``: establish who is on the other end, once per connection.

The same function serves two events. As the REQUEST authorizer of ``$connect`` it verifies
the token and returns an IAM policy whose context (the principal) API Gateway attaches to
every later event of the connection. As the ``$connect`` route it stores the connection.
A gateway without an authorizer (or a test) still gets a verified connection: the route
then verifies the token itself.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from streamer_core.auth import AuthError, AuthReason, Principal

from streamer_handlers._lambda.api_events import (
    TokenLocation,
    authorizer_principal,
    connection_expires_at,
    find_token,
    is_authorizer_event,
)
from streamer_handlers._lambda.observability import (
    AUTH_FAILURES,
    CONNECTIONS_OPENED,
    count,
    count_with_dimension,
    flush_metrics,
    logger,
    start_invocation,
    subsegment,
)
from streamer_handlers._lambda.runtime import Runtime, cold_start, get_runtime

MISSING_TOKEN = "missing_token"


class Refused(Exception):
    """The token is absent or invalid; ``status_code`` is 401 or 403."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.reason = reason


def _verify(runtime: Runtime, location: TokenLocation | None) -> Principal:
    if location is None:
        raise Refused(401, MISSING_TOKEN)
    try:
        with subsegment("verify_token"):
            return runtime.verifier.verify(location.token)
    except AuthError as error:
        reason = error.reason.value if isinstance(error.reason, AuthReason) else str(error.reason)
        raise Refused(error.status_code, reason) from None


def _count_refusal(refused: Refused) -> None:
    count(AUTH_FAILURES)
    count_with_dimension(AUTH_FAILURES, "reason", refused.reason)
    logger.info("connection refused", extra={"reason": refused.reason})


def authorize(runtime: Runtime, event: Mapping[str, Any]) -> dict[str, Any]:
    """Answer API Gateway's REQUEST authorizer call for ``$connect``.

    Raising ``Exception("Unauthorized")`` is the documented way to make the gateway
    answer 401; an explicit Deny policy makes it answer 403.
    """
    from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
        APIGatewayAuthorizerResponseWebSocket,
    )

    method_arn = str(event["methodArn"])
    try:
        principal = _verify(runtime, find_token(event))
    except Refused as refused:
        _count_refusal(refused)
        if refused.status_code != 403:
            raise Exception("Unauthorized") from None
        policy = APIGatewayAuthorizerResponseWebSocket.from_route_arn(method_arn, "anonymous")
        policy.deny_all_routes()
        return policy.asdict()
    policy = APIGatewayAuthorizerResponseWebSocket.from_route_arn(
        method_arn, principal.user_id, context=principal.to_context()
    )
    policy.allow_all_routes()
    return policy.asdict()


def connect(runtime: Runtime, event: Mapping[str, Any]) -> dict[str, Any]:
    """Store the connection of a ``$connect`` route event and accept it."""
    from streamer_core.storage import Connection

    request_context: Mapping[str, Any] = event.get("requestContext") or {}
    location = find_token(event)
    principal = authorizer_principal(request_context)
    if principal is None:
        try:
            principal = _verify(runtime, location)
        except Refused as refused:
            _count_refusal(refused)
            return {"statusCode": refused.status_code}
    now = runtime.clock()
    connected_at = request_context.get("connectedAt")
    connected_ms = int(connected_at) if isinstance(connected_at, int | float) else int(now * 1000)
    connection = Connection(
        connection_id=str(request_context["connectionId"]),
        user_id=principal.user_id,
        tenant_id=principal.tenant_id,
        permissions=frozenset(principal.permissions),
        connected_at=connected_ms,
        expires_at=connection_expires_at(connected_ms, now),
        domain_name=request_context.get("domainName"),
        stage=request_context.get("stage"),
    )
    try:
        runtime.storage.connections.put(connection)
    except ValueError as error:
        # The storage refuses an identity it cannot key safely (a tenant id with '#'):
        # the verifier should have refused it, so this is the caller's token, not an outage.
        logger.warning("connection identity refused by storage", extra={"error": str(error)})
        _count_refusal(Refused(401, AuthReason.MALFORMED.value))
        return {"statusCode": 401}
    except Exception:
        logger.exception("connection could not be stored")
        return {"statusCode": 500}
    count(CONNECTIONS_OPENED)
    logger.info("connection opened")
    response: dict[str, Any] = {"statusCode": 200}
    if location is not None and location.origin == "subprotocol" and location.subprotocol:
        response["headers"] = {"Sec-WebSocket-Protocol": location.subprotocol}
    return response


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point for both the ``$connect`` authorizer and the ``$connect`` route."""
    request_context = event.get("requestContext") or {}
    start_invocation(
        request_context.get("requestId") or getattr(context, "aws_request_id", None),
        connection_id=request_context.get("connectionId"),
    )
    started = time.perf_counter()
    try:
        with cold_start():
            runtime = get_runtime()
            if is_authorizer_event(event):
                return authorize(runtime, event)
            return connect(runtime, event)
    finally:
        logger.debug("connect done", extra={"ms": (time.perf_counter() - started) * 1000})
        flush_metrics()
