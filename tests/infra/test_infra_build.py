"""The Lambda archive: reproducible bytes, the right contents, the right install command.

Nothing here downloads: the installer is replaced by a function that writes a small tree.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from streamer_infra import build as build_module
from streamer_infra.build import (
    ZIP_EPOCH,
    BuildError,
    Requirement,
    read_workspace,
    resolve_closure,
    workspace_root,
    write_archive,
)


def make_tree(root: Path, *, mtime: int = 1_700_000_000, mode: int = 0o644) -> Path:
    files = {
        "pkg/__init__.py": "VALUE = 1\n",
        "pkg/sub/module.py": "def f() -> int:\n    return 2\n",
        "pkg/__pycache__/module.cpython-312.pyc": "bytecode",
        "pkg/data.bin": "\x00\x01\x02",
        "dep-1.0.dist-info/METADATA": "Name: dep\n",
        "dep-1.0.dist-info/RECORD": f"pkg/__init__.py,sha256=x,{root}\n",
        "dep-1.0.dist-info/INSTALLER": "pip\n",
        "bin/dep-cli": f"#!{root}/python\n",
        "dep/bin/tool.py": "TOOL = True\n",
        "stray.pyc": "bytecode",
        ".lock": "",
    }
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        os.utime(path, (mtime, mtime))
        path.chmod(mode)
    return root


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_tree_gives_the_same_archive_hash(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    first = write_archive(tree, tmp_path / "one.zip")
    second = write_archive(tree, tmp_path / "two.zip")
    assert first.sha256 == second.sha256 == digest(tmp_path / "one.zip")
    assert first.compressed_bytes == (tmp_path / "one.zip").stat().st_size


def test_timestamps_permissions_and_location_do_not_change_the_hash(tmp_path: Path) -> None:
    first = write_archive(make_tree(tmp_path / "a"), tmp_path / "a.zip")
    second = write_archive(make_tree(tmp_path / "b", mtime=1_000, mode=0o755), tmp_path / "b.zip")
    assert first.sha256 == second.sha256


def test_content_changes_change_the_hash(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    before = write_archive(tree, tmp_path / "before.zip")
    (tree / "pkg" / "__init__.py").write_text("VALUE = 2\n")
    after = write_archive(tree, tmp_path / "after.zip")
    assert before.sha256 != after.sha256


def test_archive_entries_are_sorted_fixed_and_free_of_machine_specific_files(
    tmp_path: Path,
) -> None:
    artifact = write_archive(make_tree(tmp_path / "tree"), tmp_path / "out.zip")
    with zipfile.ZipFile(artifact.path) as archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        assert names == sorted(names)
        assert names == [
            "dep-1.0.dist-info/METADATA",
            "dep/bin/tool.py",
            "pkg/__init__.py",
            "pkg/data.bin",
            "pkg/sub/module.py",
        ]
        for info in infos:
            assert info.date_time == ZIP_EPOCH
            assert (info.external_attr >> 16) & 0o777 == 0o644
            assert info.compress_type == zipfile.ZIP_DEFLATED
        assert archive.read("pkg/sub/module.py") == b"def f() -> int:\n    return 2\n"
    assert artifact.entries == len(names)
    assert artifact.uncompressed_bytes == sum(i.file_size for i in infos)
    assert artifact.sha256 in artifact.summary()
    assert "MiB zipped" in artifact.summary()


def test_workspace_closure_ships_core_and_handlers_sources_and_their_dependencies() -> None:
    packages, requirements = resolve_closure(read_workspace(workspace_root()))
    assert [p.name for p in packages] == ["streamer-core", "streamer-handlers"]
    for package in packages:
        assert (package.source / "__init__.py").is_file()
    keys = {r.key for r in requirements}
    assert {"pydantic", "pyjwt", "cryptography", "aws-lambda-powertools"} <= keys
    # Provided by the Lambda runtime, and never needed by a function: left out.
    assert not keys & {"boto3", "botocore", "pulumi", "pulumi-aws", "moto", "websockets"}


def test_requirement_parsing_and_pinning() -> None:
    requirement = Requirement.parse("PyJWT[crypto]>=2.8")
    assert (requirement.name, requirement.extras, requirement.specifier) == (
        "PyJWT",
        ("crypto",),
        ">=2.8",
    )
    pinned = requirement.pinned()
    assert pinned.startswith("PyJWT[crypto]==")
    unknown = Requirement.parse("surely-not-installed-package>=1 ; python_version >= '3.11'")
    assert unknown.pinned() == "surely-not-installed-package>=1 ; python_version >= '3.11'"
    with pytest.raises(BuildError):
        Requirement.parse("[broken")


def test_dependencies_are_installed_as_aarch64_wheels_for_lambdas_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands: list[Sequence[str]] = []

    def fake_run(command: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        commands.append(command)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    build_module.install_dependencies(tmp_path, [Requirement.parse("pydantic>=2")])
    (command,) = commands
    joined = " ".join(command)
    assert "--only-binary=:all:" in command
    assert "--python-version 3.12" in joined
    assert f"--target {tmp_path}" in joined
    assert "--platform manylinux2014_aarch64" in joined or (
        "--python-platform aarch64-manylinux2014" in joined
    )
    assert any(part.startswith("pydantic==") for part in command)


def test_a_failed_install_is_one_readable_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_run(command: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution\n")

    monkeypatch.setattr(subprocess, "run", failing_run)
    with pytest.raises(BuildError, match="No matching distribution"):
        build_module.install_dependencies(tmp_path, [Requirement.parse("pydantic")])


def test_full_build_is_reproducible_with_a_fake_installer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_install(target: Path, requirements: Sequence[Requirement]) -> None:
        make_tree(target)

    monkeypatch.setattr(build_module, "install_dependencies", fake_install)
    first = build_module.build(tmp_path / "one")
    second = build_module.build(tmp_path / "two")
    assert first.sha256 == second.sha256
    with zipfile.ZipFile(first.path) as archive:
        names = set(archive.namelist())
    assert "streamer_handlers/functions/connect.py" in names
    assert "streamer_core/__init__.py" in names
    assert "streamer_handlers/routes.py" in names
    assert not any("__pycache__" in name for name in names)


def test_build_command_reports_size_and_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(build_module, "install_dependencies", lambda target, requirements: None)
    assert build_module.main(["--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "streamer-lambda.zip" in out
    assert digest(tmp_path / "streamer-lambda.zip") in out
