"""Honest package boundaries: each extra of streamer-infra installs what its commands need.

Fresh virtual environments, made with uv from the workspace's packages: the `local` extra
runs `streamer demo` with no Pulumi importable, the `aws` extra imports the Pulumi program
with no moto importable, and each command without its extra says in one line what to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ROOT / "packages"


def _uv() -> list[str]:
    found = shutil.which("uv")
    if found is not None:
        return [found]
    probe = subprocess.run(
        ["python3", "-m", "uv", "--version"], capture_output=True, text=True, check=False
    )
    if probe.returncode == 0:
        return ["python3", "-m", "uv"]
    pytest.fail("uv is needed to make the test environments (`pip install uv`)")


def _venv(path: Path, *requirements: str) -> Path:
    uv = _uv()
    subprocess.run([*uv, "venv", "--python", sys.executable, str(path)], check=True)
    python = path / "bin" / "python"
    command = [*uv, "pip", "install", "--python", str(python)]
    for requirement in requirements:
        command += ["-e", requirement]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return python


def _run(python: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")}
    environment["PATH"] = f"{python.parent}{os.pathsep}{environment.get('PATH', '')}"
    return subprocess.run(
        [str(python), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        cwd=cwd,
        env=environment,
    )


def _importable(python: Path, module: str) -> bool:
    probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return _run(python, "-c", probe).returncode == 0


@pytest.fixture(scope="module")
def local_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _venv(
        tmp_path_factory.mktemp("local") / "venv",
        str(PACKAGES / "streamer-core"),
        str(PACKAGES / "streamer-handlers"),
        str(PACKAGES / "streamer-client"),
        f"{PACKAGES / 'streamer-infra'}[local]",
    )


@pytest.fixture(scope="module")
def aws_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _venv(
        tmp_path_factory.mktemp("aws") / "venv",
        str(PACKAGES / "streamer-core"),
        str(PACKAGES / "streamer-handlers"),
        f"{PACKAGES / 'streamer-infra'}[aws]",
    )


def test_the_local_extra_runs_the_demo_without_pulumi(local_python: Path, tmp_path: Path) -> None:
    assert not _importable(local_python, "pulumi")
    assert not _importable(local_python, "pulumi_aws")
    done = _run(local_python, "-m", "streamer_infra", "demo", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "echo -> " in done.stdout
    assert "100.0%" in done.stdout


def test_the_local_extra_says_what_the_deploy_commands_need(
    local_python: Path, tmp_path: Path
) -> None:
    done = _run(local_python, "-m", "streamer_infra.deploy", "preview", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0
    assert "streamer-infra[aws]" in done.stderr


def test_the_aws_extra_imports_the_program_without_moto(aws_python: Path) -> None:
    assert not _importable(aws_python, "moto")
    assert not _importable(aws_python, "aiohttp")
    done = _run(aws_python, "-c", "import streamer_infra.aws.program")
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_aws_extra_says_what_streamer_dev_needs(aws_python: Path, tmp_path: Path) -> None:
    done = _run(aws_python, "-m", "streamer_infra", "dev", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "streamer-infra[local]" in done.stderr
