"""The Lambda archive: reproducible bytes, the right contents, the right install commands.

Nothing here downloads: the resolver and the installer are replaced by functions that answer
from a fixed closure and write a small tree. Bytecode tests need a CPython 3.12 and are
skipped, with the reason, where none is installed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from streamer_infra import build as build_module
from streamer_infra import deploy
from streamer_infra.archive_twin import PROVIDED_BY_RUNTIME, lambda_python
from streamer_infra.build import (
    FINGERPRINT_NAME,
    ZIP_EPOCH,
    Artifact,
    BuildError,
    BuildTarget,
    Pin,
    Requirement,
    compile_bytecode,
    default_archive_path,
    parse_pinned_lines,
    parse_pip_report,
    read_workspace,
    resolve_closure,
    workspace_root,
    write_archive,
)

NO_PYTHON_312 = "no CPython 3.12 interpreter here: the archive ships without bytecode"
needs_python_312 = pytest.mark.skipif(lambda_python() is None, reason=NO_PYTHON_312)
LAMBDA_TARGET = BuildTarget(
    "lambda", "manylinux2014_aarch64", "aarch64-manylinux2014", "3.12", None
)

# What a resolver answers for the handlers' requirements: the runtime's packages arrive
# directly (boto3) and transitively (aws-xray-sdk -> botocore -> urllib3, dateutil -> six).
TRANSITIVE = (
    Pin("aws-xray-sdk", "2.15.0"),
    Pin("wrapt", "2.5.2"),
    Pin("botocore", "1.44.8"),
    Pin("s3transfer", "0.19.3"),
    Pin("jmespath", "1.1.0"),
    Pin("python-dateutil", "2.9.0.post0"),
    Pin("six", "1.17.0"),
    Pin("urllib3", "2.8.0"),
)
IMPORT_NAMES = {"python-dateutil": "dateutil", "pyjwt": "jwt"}


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


def fake_distribution(target: Path, pin: Pin) -> None:
    package = target / IMPORT_NAMES.get(pin.key, pin.key.replace("-", "_"))
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(f"VERSION = {pin.version!r}\n")
    (package / "__pycache__").mkdir(exist_ok=True)
    (package / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"installer bytecode")
    info = target / f"{pin.key.replace('-', '_')}-{pin.version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Name: {pin.name}\nVersion: {pin.version}\n")


class FakeInstaller:
    """Stands for pip/uv: resolves to the direct requirements plus TRANSITIVE, installs a
    package directory per pin, and remembers what it was asked."""

    def __init__(self) -> None:
        self.requirements: list[str] = []
        self.installed: list[Pin] = []
        self.constraints: list[str] = []

    def resolve(
        self, requirements: Sequence[str], target: BuildTarget, constraints: Sequence[str] = ()
    ) -> list[Pin]:
        self.requirements = list(requirements)
        self.constraints = list(constraints)
        direct = []
        for line in requirements:
            requirement = Requirement.parse(line)
            direct.append(Pin(requirement.key, requirement.specifier.removeprefix("==")))
        return sorted({*direct, *TRANSITIVE})

    def install(self, target_dir: Path, pins: Sequence[Pin], target: BuildTarget) -> None:
        self.installed += pins
        for pin in pins:
            fake_distribution(target_dir, pin)


@pytest.fixture
def installer(monkeypatch: pytest.MonkeyPatch) -> FakeInstaller:
    fake = FakeInstaller()
    monkeypatch.setattr(build_module, "resolve_pins", fake.resolve)
    monkeypatch.setattr(build_module, "install_pins", fake.install)
    return fake


def archive_names(path: Path) -> set[str]:
    with zipfile.ZipFile(path) as archive:
        return set(archive.namelist())


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
    assert not list(tmp_path.glob(".*partial"))


def test_only_bytecode_from_the_compile_step_goes_in(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    compiled = tree / "pkg" / "sub" / "__pycache__" / "module.cpython-312.pyc"
    compiled.parent.mkdir()
    compiled.write_bytes(b"compiled")
    artifact = write_archive(
        tree, tmp_path / "out.zip", {"pkg/sub/__pycache__/module.cpython-312.pyc"}
    )
    names = archive_names(artifact.path)
    assert "pkg/sub/__pycache__/module.cpython-312.pyc" in names
    assert "pkg/__pycache__/module.cpython-312.pyc" not in names
    assert "stray.pyc" not in names
    assert artifact.bytecode_files == 1


def test_workspace_closure_ships_core_and_handlers_sources_and_their_dependencies() -> None:
    packages, requirements = resolve_closure(read_workspace(workspace_root()))
    assert [p.name for p in packages] == ["streamer-core", "streamer-handlers"]
    for package in packages:
        assert (package.source / "__init__.py").is_file()
    by_key = {r.key: r for r in requirements}
    assert {"pydantic", "pyjwt", "cryptography", "aws-lambda-powertools"} <= set(by_key)
    # Powertools' Tracer imports aws_xray_sdk whenever tracing is on, as it is on AWS.
    assert "tracer" in by_key["aws-lambda-powertools"].extras
    assert not set(by_key) & {"pulumi", "pulumi-aws", "moto", "websockets"}


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


def test_runtime_packages_stay_out_however_they_are_reached(
    tmp_path: Path, installer: FakeInstaller
) -> None:
    artifact = build_module.build(tmp_path / "out")
    names = archive_names(artifact.path)
    tops = {name.split("/")[0] for name in names}
    for provided in ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3"):
        assert provided not in tops
    assert not any(t.startswith(("botocore-", "urllib3-", "six-")) for t in tops)
    assert not {pin.key for pin in installer.installed} & PROVIDED_BY_RUNTIME
    # aws-xray-sdk's own files are in, and wrapt (its other dependency) with them.
    assert "aws_xray_sdk/__init__.py" in names
    assert "wrapt/__init__.py" in names
    # The resolver saw the direct requirements pinned, boto3 (the runtime's) included, and
    # the installed versions as constraints for everything it reaches.
    assert any(
        line.startswith("aws-lambda-powertools[tracer]==") for line in installer.requirements
    )
    assert any(line.startswith("boto3==") for line in installer.requirements)
    assert any(line.startswith("pydantic==") for line in installer.constraints)
    assert not any(line.startswith("streamer-") for line in installer.constraints)
    shipped = json.loads((tmp_path / "out" / FINGERPRINT_NAME).read_text())["shipped"]
    assert "aws-xray-sdk==2.15.0" in shipped
    assert not any(line.startswith("botocore==") for line in shipped)


def test_full_build_is_reproducible_with_a_fake_installer(
    tmp_path: Path, installer: FakeInstaller
) -> None:
    first = build_module.build(tmp_path / "one")
    second = build_module.build(tmp_path / "two")
    assert first.sha256 == second.sha256
    names = archive_names(first.path)
    assert "streamer_handlers/functions/connect.py" in names
    assert "streamer_core/__init__.py" in names
    assert "streamer_handlers/_routes.py" in names
    # The installer's own bytecode never goes in.
    assert not any(name.endswith("cpython-311.pyc") for name in names)


@needs_python_312
def test_the_archive_has_cpython_312_bytecode_recorded_at_var_task(
    tmp_path: Path, installer: FakeInstaller
) -> None:
    artifact = build_module.build(tmp_path / "out")
    pyc = "streamer_handlers/functions/__pycache__/connect.cpython-312.pyc"
    with zipfile.ZipFile(artifact.path) as archive:
        data = archive.read(pyc)
        names = set(archive.namelist())
    # PEP 552 flags: hash-based (bit 0), source not checked (bit 1 clear).
    assert int.from_bytes(data[4:8], "little") == 0b01
    assert b"/var/task/streamer_handlers/functions/connect.py" in data
    assert str(tmp_path).encode() not in data
    assert "aws_xray_sdk/__pycache__/__init__.cpython-312.pyc" in names
    sources = {n for n in names if n.endswith(".py")}
    assert artifact.bytecode_files == len(sources)


@needs_python_312
def test_compiled_trees_give_the_same_archive_from_any_directory(tmp_path: Path) -> None:
    python = lambda_python()
    assert python is not None
    hashes = []
    for where in ("first", "second/deeper"):
        tree = make_tree(tmp_path / where / "tree")
        (tree / "pkg" / "broken.py").write_text("def broken(:\n")
        bytecode = compile_bytecode(tree, python)
        assert bytecode == {
            "dep/bin/__pycache__/tool.cpython-312.pyc",
            "pkg/__pycache__/__init__.cpython-312.pyc",
            "pkg/sub/__pycache__/module.cpython-312.pyc",
        }
        # The stray .pyc files the tree came with are gone.
        assert not (tree / "stray.pyc").exists()
        assert not (tree / "pkg" / "__pycache__" / "module.cpython-312.pyc").exists()
        hashes.append(write_archive(tree, tmp_path / where / "out.zip", bytecode).sha256)
    assert hashes[0] == hashes[1]


def test_no_python_312_means_no_bytecode_and_one_line_saying_so(
    tmp_path: Path,
    installer: FakeInstaller,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(build_module, "lambda_python", lambda: None)
    with caplog.at_level(logging.WARNING, logger=build_module.__name__):
        artifact = build_module.build(tmp_path / "out")
    assert not any(name.endswith(".pyc") for name in archive_names(artifact.path))
    assert "no bytecode" in artifact.summary()
    (message,) = [r.getMessage() for r in caplog.records]
    assert "no CPython 3.12" in message
    assert "\n" not in message


def test_host_target_is_this_machine_with_lambdas_python_when_installed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(build_module.platform_module, "machine", lambda: "x86_64")
    monkeypatch.setattr(build_module, "lambda_python", lambda: Path("/opt/python3.12"))
    target = build_module.build_target("host")
    assert (target.pip_platform, target.uv_platform) == (
        "manylinux2014_x86_64",
        "x86_64-manylinux2014",
    )
    assert (target.python_version, target.cache_tag) == ("3.12", "cpython-312")
    lambda_target = build_module.build_target("lambda")
    assert lambda_target.pip_platform == "manylinux2014_aarch64"
    assert not caplog.records

    monkeypatch.setattr(build_module, "lambda_python", lambda: None)
    with caplog.at_level(logging.WARNING, logger=build_module.__name__):
        fallback = build_module.build_target("host")
    current = f"{build_module.sys.version_info.major}.{build_module.sys.version_info.minor}"
    assert (fallback.python_version, fallback.cache_tag) == (current, None)
    (message,) = [r.getMessage() for r in caplog.records]
    assert f"Python {current}" in message
    with pytest.raises(BuildError, match="unknown platform"):
        build_module.build_target("windows")  # type: ignore[arg-type]


def test_the_host_archive_goes_next_to_the_lambda_one() -> None:
    lambda_path = default_archive_path()
    host_path = default_archive_path("host")
    assert lambda_path.parent.name == "lambda"
    assert host_path == lambda_path.parent.parent / "lambda-host" / "streamer-lambda.zip"


def fake_run(outputs: dict[str, str]) -> tuple[list[list[str]], Any]:
    commands: list[list[str]] = []

    def run(command: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        commands.append(list(command))
        output = next((v for k, v in outputs.items() if k in command), "")
        return subprocess.CompletedProcess(command, 0, output, "")

    return commands, run


PIP_REPORT = json.dumps(
    {
        "install": [
            {"metadata": {"name": "aws_lambda_powertools", "version": "3.37.0"}},
            {"metadata": {"name": "botocore", "version": "1.44.8"}},
            {"metadata": {"name": "aws-xray-sdk", "version": "2.15.0"}},
        ]
    }
)
UV_COMPILED = "aws-lambda-powertools==3.37.0\nbotocore==1.44.8\n# a comment\naws-xray-sdk==2.15.0\n"


@pytest.mark.parametrize("use_pip", [True, False])
def test_resolve_then_install_exact_pins_without_dependencies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_pip: bool
) -> None:
    commands, run = fake_run({"--dry-run": PIP_REPORT, "compile": UV_COMPILED})
    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr(build_module, "_use_pip", lambda: use_pip)
    monkeypatch.setattr(build_module.shutil, "which", lambda name: f"/usr/bin/{name}")
    shipped = build_module.install_dependencies(
        tmp_path,
        [Requirement.parse("aws-lambda-powertools[tracer]>=3")],
        LAMBDA_TARGET,
        ["wrapt==2.5.2"],
    )
    assert shipped == [Pin("aws-lambda-powertools", "3.37.0"), Pin("aws-xray-sdk", "2.15.0")]
    resolve, install = commands
    for command in (resolve, install):
        joined = " ".join(command)
        assert "--only-binary=:all:" in command
        assert "--python-version 3.12" in joined
        assert "--platform manylinux2014_aarch64" in joined or (
            "--python-platform aarch64-manylinux2014" in joined
        )
    assert "--constraint" in resolve
    assert ("--dry-run" in resolve) if use_pip else ("compile" in resolve)
    assert "--no-deps" in install
    assert f"--target {tmp_path}" in " ".join(install)
    assert install[-2:] == ["aws-lambda-powertools==3.37.0", "aws-xray-sdk==2.15.0"]


def test_resolver_outputs_are_read_as_normalized_pins() -> None:
    expected = [
        Pin("aws-lambda-powertools", "3.37.0"),
        Pin("aws-xray-sdk", "2.15.0"),
        Pin("botocore", "1.44.8"),
    ]
    assert parse_pip_report(PIP_REPORT) == expected
    assert parse_pinned_lines(UV_COMPILED) == expected
    with pytest.raises(BuildError, match="resolution report"):
        parse_pip_report("not json")


def test_a_failed_install_is_one_readable_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_run(command: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution\n")

    monkeypatch.setattr(subprocess, "run", failing_run)
    with pytest.raises(BuildError, match="No matching distribution"):
        build_module.install_dependencies(tmp_path, [Requirement.parse("pydantic")], LAMBDA_TARGET)


def test_ensure_archive_reuses_until_an_input_changes(
    tmp_path: Path, installer: FakeInstaller
) -> None:
    app = tmp_path / "app_pkg"
    app.mkdir()
    (app / "__init__.py").write_text("A = 1\n")
    out = tmp_path / "out"

    first = build_module.ensure_archive("host", [app], out)
    assert installer.installed
    installer.installed.clear()
    again = build_module.ensure_archive("host", [app], out)
    assert installer.installed == []
    assert again.sha256 == first.sha256
    assert (again.entries, again.uncompressed_bytes) == (first.entries, first.uncompressed_bytes)
    assert again.platform == "host"

    (app / "__init__.py").write_text("A = 2\n")
    changed = build_module.ensure_archive("host", [app], out)
    assert installer.installed
    assert changed.sha256 != first.sha256

    # An archive replaced behind the fingerprint's back is rebuilt, not trusted.
    installer.installed.clear()
    (out / "streamer-lambda.zip").write_bytes(b"not the archive")
    build_module.ensure_archive("host", [app], out)
    assert installer.installed

    # A dependency upgraded in the workspace since the build makes it stale.
    installer.installed.clear()
    fingerprint = out / FINGERPRINT_NAME
    recorded = json.loads(fingerprint.read_text())
    pydantic = next(line for line in recorded["shipped"] if line.startswith("pydantic=="))
    recorded["shipped"] = [*recorded["shipped"], "pydantic==0.0.1"]
    recorded["shipped"].remove(pydantic)
    fingerprint.write_text(json.dumps(recorded))
    build_module.ensure_archive("host", [app], out)
    assert installer.installed


def test_build_command_reports_size_and_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(build_module, "install_dependencies", lambda *args: [])
    assert build_module.main(["--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "streamer-lambda.zip" in out
    assert digest(tmp_path / "streamer-lambda.zip") in out


@pytest.mark.parametrize(
    "argv",
    [
        ["--platform", "host", "--output", "OUT"],
        None,  # the same through `hatch run infra:build --platform host`
    ],
)
def test_platform_option_reaches_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str] | None
) -> None:
    calls: list[tuple[Path | None, list[Path], str]] = []

    def fake_build(
        output: Path | None, sources: Sequence[Path], *, platform: str = "lambda"
    ) -> Artifact:
        calls.append((output, list(sources), platform))
        return Artifact(tmp_path / "streamer-lambda.zip", "ab" * 32, 1, 1, 1, platform)

    monkeypatch.setattr(build_module, "build", fake_build)
    monkeypatch.setattr(deploy, "build", fake_build)
    monkeypatch.delenv("STREAMER_APP_SOURCE", raising=False)
    if argv is not None:
        argv = [str(tmp_path) if a == "OUT" else a for a in argv]
        assert build_module.main(argv) == 0
        assert calls == [(tmp_path, [], "host")]
    else:
        assert deploy.main(["build", "--platform", "host"]) == 0
        assert deploy.main(["build"]) == 0
        assert calls == [(None, [], "host"), (None, [], "lambda")]
