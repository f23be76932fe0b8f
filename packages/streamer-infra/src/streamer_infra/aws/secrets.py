"""JWT key material in Secrets Manager, encrypted with the stack key.

The public key is what the connect function verifies tokens with; the private key is stored for
whatever issues tokens (an auth service), never given to any Streamer function.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi_aws as aws

from streamer_infra.aws.config import StackSettings
from streamer_infra.aws.kms import StackKey


@dataclass(frozen=True)
class JwtSecrets:
    """`public` is always present; `private` only when `jwtPrivateKey` is configured."""

    public: aws.secretsmanager.Secret
    private: aws.secretsmanager.Secret | None


def create_secrets(settings: StackSettings, key: StackKey) -> JwtSecrets:
    """Values come from secret config, so they stay encrypted in the stack state too."""
    public = _secret(settings, key, "jwt-public-key", "JWT verification key (PEM)")
    aws.secretsmanager.SecretVersion(
        "jwt-public-key-value", secret_id=public.id, secret_string=settings.jwt_public_key
    )
    private = None
    if settings.jwt_private_key is not None:
        private = _secret(settings, key, "jwt-private-key", "JWT signing key (PEM)")
        aws.secretsmanager.SecretVersion(
            "jwt-private-key-value", secret_id=private.id, secret_string=settings.jwt_private_key
        )
    return JwtSecrets(public=public, private=private)


def _secret(
    settings: StackSettings, key: StackKey, suffix: str, description: str
) -> aws.secretsmanager.Secret:
    return aws.secretsmanager.Secret(
        suffix,
        name=settings.name(suffix),
        description=f"Streamer {settings.environment}: {description}",
        kms_key_id=key.arn,
        recovery_window_in_days=7 if settings.environment == "dev" else 30,
        tags=settings.tags,
    )
