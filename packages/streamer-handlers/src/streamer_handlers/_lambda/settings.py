"""Configuration read from the environment once per cold start.

Lambda keeps a process warm across invocations, so re-reading and re-validating the
environment on every event would be wasted work; tests and the local stack change the
environment between runs, so the cache can be cleared with :func:`reset_settings`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from streamer_handlers._routes import PROCESSOR_TIMEOUT_SECONDS

DEFAULT_APP = "streamer_handlers.demo:app"
API_GATEWAY_INTEGRATION_LIMIT = 29.0
"""API Gateway drops a route integration after 29 s, so sync actions must finish before it."""


class SettingsError(ValueError):
    """A STREAMER_* variable holds a value the handlers cannot run with."""


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < minimum:
        raise SettingsError(f"{name} must be a finite number >= {minimum}, got {raw!r}")
    return value


def _integer(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    value = _number(env, name, default, minimum=minimum)
    if value != int(value):
        raise SettingsError(f"{name} must be a whole number, got {value}")
    return int(value)


@dataclass(frozen=True)
class Settings:
    """Everything the handlers take from their environment, validated up front.

    A misconfigured function should fail at its first invocation with a clear message,
    not halfway through a client's request.
    """

    env: str = "dev"
    connections_table: str | None = None
    subscriptions_table: str | None = None
    requests_table: str | None = None
    queue_url: str | None = None
    management_endpoint: str | None = None
    jwt_public_key: str | None = None
    jwt_public_key_secret: str | None = None
    jwt_public_key_file: str | None = None
    jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    allowed_tenants: frozenset[str] | None = None
    app: str = DEFAULT_APP
    rate_limit: int = 100
    rate_limit_chunk: int | None = None
    """Rate-limit units a router container reserves per DynamoDB write (None: a tenth of
    the limit, at most 10). Larger saves writes; smaller strands fewer in idle containers."""
    progress_per_second: float = 10.0
    sync_timeout: float = 25.0
    max_receive_count: int = 5
    processor_timeout: int = PROCESSOR_TIMEOUT_SECONDS
    demo_delay: float = 0.5
    max_subscriptions: int = 100
    """Topics one connection may subscribe to (its own requests do not count)."""

    def __post_init__(self) -> None:
        if not 0 < self.sync_timeout < API_GATEWAY_INTEGRATION_LIMIT:
            raise SettingsError(
                f"STREAMER_SYNC_TIMEOUT must be above 0 and below "
                f"{API_GATEWAY_INTEGRATION_LIMIT:g} s, got {self.sync_timeout:g}"
            )
        if self.progress_per_second <= 0:
            raise SettingsError("STREAMER_PROGRESS_PER_SECOND must be above 0")
        if self.rate_limit_chunk is not None and self.rate_limit_chunk < 1:
            raise SettingsError("STREAMER_RATE_LIMIT_CHUNK must be at least 1")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``); an unset variable keeps
        the field's default, declared once above."""
        env = os.environ if environ is None else environ
        tenants = _text(env, "STREAMER_ALLOWED_TENANTS")
        allowed = frozenset(t.strip() for t in tenants.split(",") if t.strip()) if tenants else None
        endpoint = _text(env, "STREAMER_MANAGEMENT_ENDPOINT")
        chunk = _text(env, "STREAMER_RATE_LIMIT_CHUNK")
        return cls(
            env=_text(env, "STREAMER_ENV") or _DEFAULTS.env,
            connections_table=_text(env, "STREAMER_CONNECTIONS_TABLE"),
            subscriptions_table=_text(env, "STREAMER_SUBSCRIPTIONS_TABLE"),
            requests_table=_text(env, "STREAMER_REQUESTS_TABLE"),
            queue_url=_text(env, "STREAMER_QUEUE_URL"),
            management_endpoint=endpoint.rstrip("/") if endpoint else None,
            jwt_public_key=_text(env, "STREAMER_JWT_PUBLIC_KEY"),
            jwt_public_key_secret=_text(env, "STREAMER_JWT_PUBLIC_KEY_SECRET"),
            jwt_public_key_file=_text(env, "STREAMER_JWT_PUBLIC_KEY_FILE"),
            jwks_url=_text(env, "STREAMER_JWKS_URL"),
            jwt_issuer=_text(env, "STREAMER_JWT_ISSUER"),
            jwt_audience=_text(env, "STREAMER_JWT_AUDIENCE"),
            allowed_tenants=allowed,
            app=_text(env, "STREAMER_APP") or _DEFAULTS.app,
            rate_limit=_integer(env, "STREAMER_RATE_LIMIT", _DEFAULTS.rate_limit, minimum=1),
            rate_limit_chunk=(
                _integer(env, "STREAMER_RATE_LIMIT_CHUNK", 1, minimum=1) if chunk else None
            ),
            progress_per_second=_number(
                env, "STREAMER_PROGRESS_PER_SECOND", _DEFAULTS.progress_per_second, minimum=0.001
            ),
            sync_timeout=_number(
                env, "STREAMER_SYNC_TIMEOUT", _DEFAULTS.sync_timeout, minimum=0.001
            ),
            max_receive_count=_integer(
                env, "STREAMER_MAX_RECEIVE_COUNT", _DEFAULTS.max_receive_count, minimum=1
            ),
            processor_timeout=_integer(
                env, "STREAMER_PROCESSOR_TIMEOUT", _DEFAULTS.processor_timeout, minimum=1
            ),
            demo_delay=_number(env, "STREAMER_DEMO_DELAY", _DEFAULTS.demo_delay, minimum=0.0),
            max_subscriptions=_integer(
                env, "STREAMER_MAX_SUBSCRIPTIONS", _DEFAULTS.max_subscriptions, minimum=1
            ),
        )


_DEFAULTS = Settings()
"""Each field's default, read by :meth:`Settings.from_env` so that no default is written twice."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read on first use."""
    return Settings.from_env()


def reset_settings() -> None:
    """Forget the cached settings so the next :func:`get_settings` re-reads the environment."""
    get_settings.cache_clear()
