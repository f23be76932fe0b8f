"""JWT authentication: verify bearer tokens into principals, mint tokens, keep them out of logs.

Imported as ``streamer_core.auth`` and never from the package root, because it needs PyJWT and
cryptography (the ``jwt`` extra) while the client installs core without them.
"""

from streamer_core.auth.errors import AuthError, AuthReason
from streamer_core.auth.issuer import TokenIssuer, generate_key_pair
from streamer_core.auth.keys import KeySet, KeySource
from streamer_core.auth.principal import Principal
from streamer_core.auth.redaction import redact_tokens
from streamer_core.auth.secrets_manager import SecretsManagerKeySource
from streamer_core.auth.verifier import TokenVerifier

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
