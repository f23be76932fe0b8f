"""Fixtures of the infra tests: each stack runs once per session under Pulumi's mocks."""

from __future__ import annotations

import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from infra_harness import ENVIRONMENTS, Deployment, run_program


@pytest.fixture(scope="session")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small stand-in archive: the program only checks that the build produced one."""
    path = tmp_path_factory.mktemp("artifact") / "streamer-lambda.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("streamer_handlers/__init__.py", "")
    return path


@pytest.fixture(scope="session")
def deployments(artifact: Path) -> Callable[[str], Deployment]:
    """Each stack runs once per session; tests only read the recorded result."""
    cache: dict[str, Deployment] = {}

    def get(environment: str) -> Deployment:
        if environment not in cache:
            cache[environment] = run_program(environment, artifact)
        return cache[environment]

    return get


@pytest.fixture(params=ENVIRONMENTS)
def deployment(
    request: pytest.FixtureRequest, deployments: Callable[[str], Deployment]
) -> Deployment:
    return deployments(request.param)


CUSTOM_APP = """
from streamer_handlers._app import Streamer

app = Streamer()


@app.action("thumbnail", asynchronous=True)
def thumbnail(request, progress):
    return None
"""

CUSTOM_CONFIG = {
    "streamer:environment": "feature-x",
    "streamer:app": "infra_custom_app:app",
    "streamer:alarmEmail": "oncall@example.com",
    "streamer:maxReceiveCount": "3",
    "streamer:reservedConcurrency": "20",
    "streamer:authFailuresThreshold": "7",
    "streamer:logRetentionDays": "14",
    "streamer:jwtPrivateKey": None,
    "streamer:jwtPublicKeyInEnvironment": "false",
}


@pytest.fixture(scope="session")
def customized(artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """One run with every override at once (a custom app, an alarm email, an unnamed env,
    no private key, changed limits): one program run instead of one per override."""
    app_dir = tmp_path_factory.mktemp("app")
    (app_dir / "infra_custom_app.py").write_text(CUSTOM_APP)
    sys.path.insert(0, str(app_dir))
    try:
        yield run_program("staging", artifact, CUSTOM_CONFIG)
    finally:
        sys.path.remove(str(app_dir))
        sys.modules.pop("infra_custom_app", None)
