"""Stack settings: one place that turns Pulumi config into the numbers every module uses.

The deployment document fixes per-environment values (memory, reserved concurrency, log retention);
everything else has a default chosen here and can be overridden per stack with
`pulumi config set streamer:<key> <value>`, so no module reads config on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi
from streamer_handlers.deployment import METRICS_NAMESPACE as METRICS_NAMESPACE
from streamer_handlers.deployment import Settings, metric_dimensions

from streamer_infra.build import LAMBDA_PYTHON, default_archive_path

SERVICE = "streamer"
# The archive is built for this Python version; the runtime must match its wheels.
DEFAULT_RUNTIME = f"python{LAMBDA_PYTHON}"


@dataclass(frozen=True)
class AlarmThresholds:
    """Alarm thresholds of one stack; per-period sums unless the name says otherwise."""

    auth_failures: int
    message_failures: int
    processing_latency_p99_ms: int
    lambda_errors: int
    lambda_throttles: int
    concurrency_ratio: float
    dead_letter_messages: int


@dataclass(frozen=True)
class EnvironmentProfile:
    """The defaults an environment starts from before stack config is applied."""

    reserved_concurrency: int
    log_retention_days: int
    log_level: str
    throttle_rate_limit: float
    throttle_burst_limit: int
    alarms: AlarmThresholds


# Fields in order: auth failures, message failures, p99 processing latency (ms), Lambda
# errors, Lambda throttles, concurrency ratio, dead-letter messages.
_STRICT_ALARMS = AlarmThresholds(50, 25, 60_000, 5, 1, 0.8, 1)
_DEV_ALARMS = AlarmThresholds(100, 50, 120_000, 10, 5, 0.9, 1)

PROFILES: dict[str, EnvironmentProfile] = {
    "dev": EnvironmentProfile(10, 7, "DEBUG", 100.0, 200, _DEV_ALARMS),
    "staging": EnvironmentProfile(50, 30, "INFO", 500.0, 1000, _STRICT_ALARMS),
    "production": EnvironmentProfile(100, 90, "INFO", 2000.0, 5000, _STRICT_ALARMS),
}

# CloudWatch Logs accepts only these retention values; anything else fails at deploy time.
VALID_RETENTION_DAYS = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557}
    | {2922, 3288, 3653}
)


@dataclass(frozen=True)
class StackSettings:
    """Everything the program needs to know about the stack being deployed."""

    environment: str
    stage: str
    memory_mb: int | None
    reserved_concurrency: int
    log_retention_days: int
    log_level: str
    max_receive_count: int
    batch_size: int
    throttle_rate_limit: float
    throttle_burst_limit: int
    alarms: AlarmThresholds
    alarm_email: str | None
    artifact_path: Path
    manage_api_gateway_account: bool
    app: str | None
    jwt_issuer: str | None
    jwt_audience: str | None
    allowed_tenants: str | None
    rate_limit: int | None
    jwt_public_key: pulumi.Output[str]
    jwt_private_key: pulumi.Output[str] | None
    jwt_public_key_in_environment: bool = True
    """Also hand the public key to the functions as STREAMER_JWT_PUBLIC_KEY (it is not a
    secret), so a cold ``$connect`` verifies without a Secrets Manager client and round trip.
    Off (``streamer:jwtPublicKeyInEnvironment false``): the functions read the secret, and a
    key rotated in Secrets Manager outside Pulumi is picked up within five minutes."""

    @property
    def tags(self) -> dict[str, str]:
        """Tags every resource carries so cost and ownership reports split by environment."""
        return {"environment": self.environment, "service": SERVICE}

    @property
    def metric_dimensions(self) -> dict[str, str]:
        """What the functions put on every custom metric (the handlers' declaration); the
        environment dimension keeps dev traffic out of production's alarms in a shared account."""
        return metric_dimensions(self.environment)

    def name(self, suffix: str) -> str:
        """Physical name of a resource: unique per environment within one account and region."""
        return f"{SERVICE}-{self.environment}-{suffix}"


def stage_for(environment: str) -> str:
    """The deployment document calls production's stage `prod`; other stages use the env name."""
    return "prod" if environment == "production" else environment


def load_settings() -> StackSettings:
    """Read the stack's config; unknown environments start from the dev profile."""
    config = pulumi.Config(SERVICE)
    environment = config.get("environment") or pulumi.get_stack()
    profile = PROFILES.get(environment, PROFILES["dev"])
    alarms = AlarmThresholds(
        auth_failures=config.get_int("authFailuresThreshold") or profile.alarms.auth_failures,
        message_failures=config.get_int("messageFailuresThreshold")
        or profile.alarms.message_failures,
        processing_latency_p99_ms=config.get_int("processingLatencyThresholdMs")
        or profile.alarms.processing_latency_p99_ms,
        lambda_errors=config.get_int("lambdaErrorsThreshold") or profile.alarms.lambda_errors,
        lambda_throttles=config.get_int("lambdaThrottlesThreshold")
        or profile.alarms.lambda_throttles,
        concurrency_ratio=config.get_float("concurrencyAlarmRatio")
        or profile.alarms.concurrency_ratio,
        dead_letter_messages=config.get_int("deadLetterThreshold")
        or profile.alarms.dead_letter_messages,
    )
    retention = config.get_int("logRetentionDays") or profile.log_retention_days
    if retention not in VALID_RETENTION_DAYS:
        raise ValueError(
            f"streamer:logRetentionDays={retention} is not a CloudWatch Logs retention value; "
            f"use one of {sorted(VALID_RETENTION_DAYS)}"
        )
    max_receive_count = config.get_int("maxReceiveCount") or Settings().max_receive_count
    if not 1 <= max_receive_count <= 1000:
        raise ValueError("streamer:maxReceiveCount must be between 1 and 1000 (SQS redrive limit)")
    rate_limit = config.get_int("rateLimit")
    private_key = config.get_secret("jwtPrivateKey")
    artifact = config.get("artifactPath")
    return StackSettings(
        environment=environment,
        stage=config.get("stage") or stage_for(environment),
        memory_mb=config.get_int("lambdaMemory"),
        reserved_concurrency=config.get_int("reservedConcurrency") or profile.reserved_concurrency,
        log_retention_days=retention,
        log_level=(config.get("logLevel") or profile.log_level).upper(),
        max_receive_count=max_receive_count,
        batch_size=config.get_int("batchSize") or 10,
        throttle_rate_limit=config.get_float("throttleRateLimit") or profile.throttle_rate_limit,
        throttle_burst_limit=config.get_int("throttleBurstLimit") or profile.throttle_burst_limit,
        alarms=alarms,
        alarm_email=config.get("alarmEmail") or None,
        artifact_path=Path(artifact) if artifact else default_archive_path(),
        manage_api_gateway_account=config.get_bool("manageApiGatewayAccount") is not False,
        app=config.get("app") or None,
        jwt_issuer=config.get("jwtIssuer") or None,
        jwt_audience=config.get("jwtAudience") or None,
        allowed_tenants=config.get("allowedTenants") or None,
        rate_limit=rate_limit,
        jwt_public_key=config.require_secret("jwtPublicKey"),
        jwt_private_key=private_key,
        jwt_public_key_in_environment=config.get_bool("jwtPublicKeyInEnvironment") is not False,
    )
