"""The development signing key, kept on disk so separate processes agree on it.

`streamer dev` and a later `streamer token` run in different processes: the token only
verifies if both use the same pair, so the pair lives under ./.streamer/ (git-ignored),
created on first use with the private half readable by its owner only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from streamer_core.auth import TokenIssuer, generate_key_pair

__all__ = ["DEFAULT_STATE_DIR", "DEV_ISSUER", "DevKeys", "keys_from_files", "load_or_create_keys"]

DEV_ISSUER = "streamer-local"
DEFAULT_STATE_DIR = Path(".streamer")
_PRIVATE = "jwt-private.pem"
_PUBLIC = "jwt-public.pem"


@dataclass(frozen=True)
class DevKeys:
    """A key pair; without the private half the stack verifies tokens but cannot mint them."""

    public_pem: str
    private_pem: str | None = None

    def issuer(self, issuer: str | None = DEV_ISSUER) -> TokenIssuer:
        if self.private_pem is None:
            raise ValueError("no private key: pass --jwt-private-key to mint tokens")
        return TokenIssuer(self.private_pem, issuer=issuer)


def load_or_create_keys(state_dir: Path = DEFAULT_STATE_DIR) -> DevKeys:
    """The pair under `state_dir`, generated and saved when absent."""
    private_path, public_path = state_dir / _PRIVATE, state_dir / _PUBLIC
    if private_path.exists() and public_path.exists():
        return DevKeys(public_path.read_text(), private_path.read_text())
    private_pem, public_pem = generate_key_pair()
    state_dir.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(private_pem)
    public_path.write_text(public_pem)
    return DevKeys(public_pem, private_pem)


def keys_from_files(public_path: Path, private_path: Path | None = None) -> DevKeys:
    """A pair supplied by the user (their identity provider's key, for instance)."""
    private_pem = private_path.read_text() if private_path is not None else None
    return DevKeys(public_path.read_text(), private_pem)
