"""How API Gateway turns a REQUEST authorizer's answer into an accepted or refused upgrade.

Mirrors the service's rules so a policy that would fail on AWS fails here too: a raised
"Unauthorized" is 401, a Deny (or no Allow) for the method ARN is 403, anything malformed
(missing principal, non-primitive context values, a crash) is 500.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from streamer_infra.local._invoker import Invocation

__all__ = ["AuthorizerDecision", "decide"]

logger = logging.getLogger("streamer.local.gateway")


@dataclass(frozen=True)
class AuthorizerDecision:
    status: int
    message: str
    principal_id: str | None = None
    context: Mapping[str, str | int | float | bool] = field(default_factory=dict)


_UNAUTHORIZED = AuthorizerDecision(401, "Unauthorized")
_FORBIDDEN = AuthorizerDecision(403, "Forbidden")
_BROKEN = AuthorizerDecision(500, "Internal server error")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _covers(statement: Mapping[str, Any], method_arn: str) -> bool:
    actions = [a for a in _as_list(statement.get("Action")) if isinstance(a, str)]
    resources = [r for r in _as_list(statement.get("Resource")) if isinstance(r, str)]
    return any(fnmatchcase("execute-api:Invoke", a) for a in actions) and any(
        fnmatchcase(method_arn, r) for r in resources
    )


def decide(invocation: Invocation, method_arn: str) -> AuthorizerDecision:
    """Evaluate an authorizer invocation against the `$connect` method ARN."""
    if not invocation.ok:
        return _UNAUTHORIZED if invocation.error_message == "Unauthorized" else _BROKEN
    result = invocation.result
    if not isinstance(result, dict):
        logger.error("authorizer returned %s, not a policy object", type(result).__name__)
        return _BROKEN
    principal = result.get("principalId")
    document = result.get("policyDocument")
    context = result.get("context") or {}
    if not isinstance(principal, str) or not isinstance(document, dict):
        logger.error("authorizer result needs a principalId and a policyDocument")
        return _BROKEN
    if not isinstance(context, dict) or not all(
        isinstance(v, str | int | float | bool) for v in context.values()
    ):
        logger.error("authorizer context values must be strings, numbers or booleans")
        return _BROKEN
    allowed = False
    for statement in _as_list(document.get("Statement")):
        if not isinstance(statement, dict) or not _covers(statement, method_arn):
            continue
        if statement.get("Effect") == "Deny":
            return _FORBIDDEN
        if statement.get("Effect") == "Allow":
            allowed = True
    if not allowed:
        return _FORBIDDEN
    return AuthorizerDecision(200, "OK", principal, context)
