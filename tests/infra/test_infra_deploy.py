"""`python -m streamer_infra.deploy`: clear one-line failures, the right Pulumi calls."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from streamer_infra import deploy
from streamer_infra.build import Artifact


@pytest.fixture
def fake_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[int]:
    calls: list[int] = []
    sources_seen: list[Path] = []

    def build(output: Path | None, sources: Sequence[Path]) -> Artifact:
        calls.append(1)
        assert output is None
        sources_seen.extend(sources)
        return Artifact(tmp_path / "streamer-lambda.zip", "ab" * 32, 10, 20, 3)

    monkeypatch.setattr(deploy, "build", build)
    return calls


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def test_without_the_pulumi_cli_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fake_build: list[int]
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert deploy.main(["preview", "dev"]) == 1
    line = one_error_line(capsys)
    assert "Pulumi CLI is not installed" in line
    assert deploy.PULUMI_INSTALL in line
    assert fake_build == []


def test_without_aws_credentials_says_what_to_configure(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fake_build: list[int]
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/pulumi")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.delenv("AWS_WEB_IDENTITY_TOKEN_FILE", raising=False)
    assert deploy.main(["up", "staging"]) == 1
    line = one_error_line(capsys)
    assert "no AWS credentials" in line
    assert "aws configure" in line


def test_up_selects_the_stack_checks_the_key_builds_then_runs_pulumi(
    monkeypatch: pytest.MonkeyPatch, fake_build: list[int]
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/pulumi")
    commands: list[list[str]] = []

    def fake_run(command: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        commands.append(list(command))
        assert kwargs["cwd"] == deploy.project_dir()
        assert kwargs["env"]["PULUMI_PYTHON_CMD"]
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert deploy.main(["up", "production", "--yes"]) == 0
    assert commands == [
        ["/usr/bin/pulumi", "stack", "select", "production", "--create"],
        ["/usr/bin/pulumi", "config", "get", "jwtPublicKey", "--stack", "production"],
        ["/usr/bin/pulumi", "up", "--stack", "production", "--yes"],
    ]
    assert fake_build == [1]
    assert (deploy.project_dir() / "Pulumi.yaml").is_file()


def test_destroy_does_not_build(monkeypatch: pytest.MonkeyPatch, fake_build: list[int]) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/pulumi")
    commands: list[list[str]] = []

    def fake_run(command: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        commands.append(list(command))
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert deploy.main(["destroy"]) == 0
    assert commands[-1] == ["/usr/bin/pulumi", "destroy", "--stack", "dev"]
    assert fake_build == []


def test_missing_jwt_key_names_the_config_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fake_build: list[int]
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/pulumi")

    def fake_run(command: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        code = 1 if "config" in command else 0
        return subprocess.CompletedProcess(command, code, "", "error: missing")

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert deploy.main(["preview", "dev"]) == 1
    line = one_error_line(capsys)
    assert "pulumi config set --secret jwtPublicKey" in line
    assert fake_build == []


def test_build_needs_neither_pulumi_nor_credentials(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fake_build: list[int]
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert deploy.main(["build"]) == 0
    assert "sha256" in capsys.readouterr().out
    assert fake_build == [1]


def test_failed_stack_selection_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fake_build: list[int]
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/pulumi")

    def fake_run(command: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 255, "", "details\nerror: not logged in\n")

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert deploy.main(["preview", "staging"]) == 1
    assert "error: not logged in" in one_error_line(capsys)


def test_invalid_stack_name_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        deploy.main(["up", "not a stack"])
    assert exit_info.value.code == 2
    assert "invalid stack name" in capsys.readouterr().err


def test_application_sources_outside_the_workspace_are_added_to_the_build(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[Sequence[Path]] = []

    def build(output: Path | None, sources: Sequence[Path]) -> Artifact:
        seen.append(sources)
        return Artifact(tmp_path / "streamer-lambda.zip", "cd" * 32, 1, 1, 1)

    monkeypatch.setattr(deploy, "build", build)
    monkeypatch.setenv("STREAMER_APP_SOURCE", os.pathsep.join(["/src/app_one", "/src/app_two"]))
    assert deploy.main(["build"]) == 0
    assert seen == [[Path("/src/app_one"), Path("/src/app_two")]]
