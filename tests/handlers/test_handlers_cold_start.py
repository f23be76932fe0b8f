"""What a fresh process does on its first event: one boto3 session, the inline key, no GC."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from streamer_handlers._lambda import runtime
from streamer_handlers.deployment import Settings


@pytest.fixture
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """As if no invocation had run yet; ``gc.freeze`` is recorded, not applied to pytest."""
    calls: list[str] = []
    monkeypatch.setattr(runtime, "_cold", True)
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    return calls


def test_the_first_invocation_runs_without_the_collector_then_freezes(
    fresh_process: list[str],
) -> None:
    assert gc.isenabled()
    with runtime.cold_start():
        assert not gc.isenabled()
        assert fresh_process == []
    assert gc.isenabled()
    assert fresh_process == ["freeze"]


def test_later_invocations_keep_the_collector(fresh_process: list[str]) -> None:
    with runtime.cold_start():
        pass
    with runtime.cold_start():
        assert gc.isenabled()
    assert fresh_process == ["freeze"]


def test_the_collector_comes_back_when_the_first_invocation_raises(
    fresh_process: list[str],
) -> None:
    with pytest.raises(RuntimeError), runtime.cold_start():
        raise RuntimeError("boom")
    assert gc.isenabled()
    assert fresh_process == ["freeze"]


def test_a_process_that_turned_the_collector_off_keeps_it_off(
    fresh_process: list[str],
) -> None:
    gc.disable()
    try:
        with runtime.cold_start():
            assert not gc.isenabled()
        assert not gc.isenabled()
        assert fresh_process == []
    finally:
        gc.enable()


def test_every_client_is_built_from_one_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setattr(runtime, "_boto_session", None)
    built: list[Any] = []
    session = runtime.boto_session()
    monkeypatch.setattr(session, "client", lambda service, **kw: built.append((service, kw)))
    runtime.boto_client("dynamodb")
    runtime.boto_client("secretsmanager")
    assert runtime.boto_session() is session
    assert [service for service, _ in built] == ["dynamodb", "secretsmanager"]
    config = built[0][1]["config"]
    assert config.max_pool_connections == runtime.MAX_POOL_CONNECTIONS


def test_an_inline_public_key_wins_over_the_secret(key_pair: tuple[str, str]) -> None:
    # As deployed: both are set; verifying must not reach for Secrets Manager (there is no
    # AWS here, so a lookup would fail).
    from streamer_core.auth import TokenIssuer

    verifier = runtime.build_verifier(
        Settings(
            jwt_public_key=key_pair[1],
            jwt_public_key_secret="arn:aws:secretsmanager:us-east-1:123456789012:secret:none",
        )
    )
    token = TokenIssuer(key_pair[0], algorithm="ES256").issue("alice", "acme")
    assert verifier.verify(token).user_id == "alice"


def test_without_an_inline_key_the_secret_is_the_source() -> None:
    from streamer_core.auth import SecretsManagerKeySource

    verifier = runtime.build_verifier(Settings(jwt_public_key_secret="streamer/dev/jwt"))
    assert "SecretsManagerKeySource(secret_id='streamer/dev/jwt'" in repr(verifier)
    assert SecretsManagerKeySource is not None
