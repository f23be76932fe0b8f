"""One environment contract: the local stack gives the functions what the deployment gives them,
and differs only where `local_only_environment` says it must."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from infra_harness import Deployment
from streamer_core.auth import generate_key_pair
from streamer_infra.aws.config import PROFILES
from streamer_infra.local import BackgroundStack, DevKeys, LocalStackConfig
from streamer_infra.local._stack import DEV_RESERVED_CONCURRENCY, local_only_environment

FUNCTION = "aws:lambda/function:Function"
RESOURCE_NAMES = {
    "STREAMER_CONNECTIONS_TABLE",
    "STREAMER_SUBSCRIPTIONS_TABLE",
    "STREAMER_REQUESTS_TABLE",
    "STREAMER_QUEUE_URL",
    "STREAMER_MANAGEMENT_ENDPOINT",
    "STREAMER_JWT_PUBLIC_KEY_SECRET",
}
PER_ENVIRONMENT = {"STREAMER_ENV", "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_LOG_LEVEL"}


def test_the_local_stack_sets_every_variable_the_deployment_sets(
    deployments: Callable[[str], Deployment], tmp_path: Path
) -> None:
    deployed = deployments("dev").of_type(FUNCTION)[0].inputs["environment"]["variables"]
    private_pem, public_pem = generate_key_pair()
    config = LocalStackConfig(port=0, keys=DevKeys(public_pem, private_pem), state_dir=tmp_path)
    with BackgroundStack(config):
        local = dict(os.environ)
    # The deployment also hands the key inline; locally the functions read it from the
    # emulator's Secrets Manager, the path a deployment takes when the inline key is off.
    expected = set(deployed) - {"STREAMER_JWT_PUBLIC_KEY"}
    missing = expected - set(local)
    assert not missing
    for name in expected - RESOURCE_NAMES - PER_ENVIRONMENT:
        assert local[name] == deployed[name], name
    assert local["POWERTOOLS_TRACE_DISABLED"] == "false"
    assert local["POWERTOOLS_SERVICE_NAME"] == "streamer-local"


def test_the_local_differences_are_the_emulators_endpoint_credentials_region_and_metrics() -> None:
    differences = local_only_environment("http://127.0.0.1:5000", "eu-west-1")
    assert set(differences) == {
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "POWERTOOLS_METRICS_DISABLED",
    }
    assert not any(name.startswith("STREAMER_") for name in differences)


def test_the_local_queue_consumer_stands_for_the_dev_deployments_concurrency() -> None:
    assert PROFILES["dev"].reserved_concurrency == DEV_RESERVED_CONCURRENCY
    assert LocalStackConfig().sqs_concurrency == DEV_RESERVED_CONCURRENCY
