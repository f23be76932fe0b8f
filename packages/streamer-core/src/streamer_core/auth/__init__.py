"""JWT authentication: verify bearer tokens into principals, mint tokens, keep them out of logs.

Imported as ``streamer_core.auth`` and never from the package root, because it needs PyJWT and
cryptography (the ``jwt`` extra) while the client installs core without them.

The names that need PyJWT or cryptography load on first use: the router reads the principal
that ``$connect`` verified and only needs :class:`Principal` and :func:`redact_tokens`, so its
cold start does not pay for the JWT stack.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from streamer_core.auth._errors import AuthError, AuthReason
from streamer_core.auth._principal import Principal
from streamer_core.auth._redaction import redact_tokens

if TYPE_CHECKING:
    from streamer_core.auth._issuer import TokenIssuer, generate_key_pair
    from streamer_core.auth._keys import KeySet, KeySource
    from streamer_core.auth._secrets_manager import SecretsManagerKeySource
    from streamer_core.auth._verifier import TokenVerifier

__all__ = [
    "AuthError",
    "AuthReason",
    "KeySet",
    "KeySource",
    "Principal",
    "SecretsManagerKeySource",
    "TokenIssuer",
    "TokenVerifier",
    "generate_key_pair",
    "redact_tokens",
]

_LAZY = {
    "KeySet": "streamer_core.auth._keys",
    "KeySource": "streamer_core.auth._keys",
    "SecretsManagerKeySource": "streamer_core.auth._secrets_manager",
    "TokenIssuer": "streamer_core.auth._issuer",
    "generate_key_pair": "streamer_core.auth._issuer",
    "TokenVerifier": "streamer_core.auth._verifier",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
