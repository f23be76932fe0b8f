"""Local stacks for the end-to-end tests, driven over real sockets.

Each stack runs on its own thread and event loop (`BackgroundStack`), so tests of any
loop scope can use it; one stack is shared per module, and only one runs at a time in
the process because the handlers read their configuration from the environment.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamer_core.auth import generate_key_pair
from streamer_infra.local import BackgroundStack, DevKeys, LocalStack

E2E_DIR = Path(__file__).resolve().parent
if str(E2E_DIR) not in sys.path:
    # The stacks serve `streamer_e2e_app:app` and the tests import `e2e_support`.
    sys.path.insert(0, str(E2E_DIR))

from e2e_support import stack_config  # noqa: E402 - importable only from here on


@pytest.fixture(autouse=True)
def _fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replaces the root fixture of the same name for this directory: the same fake
    credentials, but AWS_ENDPOINT_URL is left alone.

    A running stack points the handlers at the embedded emulator through AWS_ENDPOINT_URL;
    clearing it under a live stack would send the handlers' first boto3 calls to AWS.
    """
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture(scope="session")
def e2e_keys() -> DevKeys:
    private_pem, public_pem = generate_key_pair()
    return DevKeys(public_pem, private_pem)


@pytest.fixture(scope="module")
def local_stack(
    e2e_keys: DevKeys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    """One running stack for a module: `.ws_url`, `.management_url`, `.token(sub, tenant)`."""
    config = stack_config(e2e_keys, tmp_path_factory.mktemp("stack"))
    with BackgroundStack(config) as stack:
        yield stack
