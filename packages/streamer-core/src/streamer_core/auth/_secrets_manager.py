"""Public keys kept in AWS Secrets Manager, fetched rarely.

boto3 is imported and its client created only on first use: importing boto3 is the largest
single cost of a cold start, and most cold starts that import this module never reach a
Secrets Manager lookup.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from streamer_core.auth._keys import KeySet

_logger = logging.getLogger(__name__)

# After a failed refresh the previous keys keep serving; retry no sooner than this.
_RETRY_AFTER_FAILURE_SECONDS = 30.0


class SecretsManagerKeySource:
    """A :class:`KeySource` reading a secret that holds a PEM or a JSON ``{kid: PEM}`` object.

    The value is cached for ``ttl_seconds`` so that verification never waits on a network call
    in the common case. When a refresh fails, the previous keys stay in use for a short while:
    a Secrets Manager hiccup must not turn into every client being refused.
    """

    def __init__(
        self,
        secret_id: str,
        *,
        client: Any | None = None,
        ttl_seconds: float = 300,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not secret_id:
            raise ValueError("secret_id is required")
        if ttl_seconds < 0:
            raise ValueError("ttl_seconds must not be negative")
        self._secret_id = secret_id
        self._client = client
        self._ttl = float(ttl_seconds)
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[KeySet, float] | None = None

    @property
    def secret_id(self) -> str:
        """The secret's name or ARN, for error messages and diagnostics."""
        return self._secret_id

    def keys(self) -> KeySet:
        """The cached keys, refreshed at most once per TTL even under concurrent callers."""
        cached = self._cached
        if cached is not None and self._clock() < cached[1]:
            return cached[0]
        with self._lock:
            cached = self._cached
            now = self._clock()
            if cached is not None and now < cached[1]:
                return cached[0]
            try:
                keys = self._fetch()
            except Exception as exc:
                if cached is None:
                    raise
                _logger.warning(
                    "refreshing signing keys from secret %s failed (%s); keeping previous keys",
                    self._secret_id,
                    type(exc).__name__,
                )
                self._cached = (cached[0], now + min(self._ttl, _RETRY_AFTER_FAILURE_SECONDS))
                return cached[0]
            self._cached = (keys, now + self._ttl)
            return keys

    def _fetch(self) -> KeySet:
        if self._client is None:
            import boto3

            self._client = boto3.client("secretsmanager")
        response = self._client.get_secret_value(SecretId=self._secret_id)
        value = response.get("SecretString")
        if value is None:
            binary = response.get("SecretBinary")
            if binary is None:
                raise ValueError(f"secret {self._secret_id} holds no value")
            value = bytes(binary).decode("utf-8")
        return KeySet.from_secret_string(value)

    def __repr__(self) -> str:
        return f"SecretsManagerKeySource(secret_id={self._secret_id!r}, ttl_seconds={self._ttl})"
