"""The archive twin: the archive unpacked read-only beside the runtime's packages, and a child
interpreter that can import nothing else.

The unit tests use a small archive made here. The slow test builds the real host archive
(from PyPI, about a minute the first time; `ensure_archive` reuses it afterwards) and imports
the functions from it with tracing on, as Lambda would run them.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamer_infra import archive_twin
from streamer_infra.archive_twin import (
    PROVIDED_BY_RUNTIME,
    Twin,
    lambda_python,
    prepare_twin,
    twin_command,
    twin_sys_path,
)
from streamer_infra.build import ensure_archive, write_archive

RUNTIME_IMPORTS = {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3"}

PROBE = """
import json, sys
stdlib = list(sys.path)
sys.path.extend(json.loads(sys.argv[1]))
import app_pkg, boto3
try:
    import pydantic
except ModuleNotFoundError:
    pydantic = None
print(json.dumps({
    "stdlib": stdlib,
    "app": app_pkg.__file__,
    "boto3": boto3.__file__,
    "pydantic": None if pydantic is None else pydantic.__file__,
    "flags": [sys.flags.isolated, sys.flags.no_site, sys.flags.dont_write_bytecode],
}))
"""


def small_archive(path: Path, value: int) -> Path:
    tree = path.parent / f"{path.stem}-tree"
    (tree / "app_pkg" / "sub").mkdir(parents=True)
    (tree / "app_pkg" / "__init__.py").write_text(f"VALUE = {value}\n")
    (tree / "app_pkg" / "sub" / "data.txt").write_text("data\n")
    return write_archive(tree, path).path


def modes(root: Path) -> tuple[set[int], set[int]]:
    files, dirs = set(), {stat.S_IMODE(root.stat().st_mode)}
    for directory, dirnames, filenames in os.walk(root):
        files |= {stat.S_IMODE((Path(directory) / f).stat().st_mode) for f in filenames}
        dirs |= {stat.S_IMODE((Path(directory) / d).stat().st_mode) for d in dirnames}
    return files, dirs


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Twin]:
    root = tmp_path_factory.mktemp("twin")
    made = prepare_twin(small_archive(root / "one.zip", 1), root / "twin")
    yield made
    archive_twin.remove_tree(root / "twin")


def test_the_task_root_is_the_archive_made_read_only(twin: Twin) -> None:
    assert (twin.task_root / "app_pkg" / "__init__.py").read_text() == "VALUE = 1\n"
    assert (twin.task_root / "app_pkg" / "sub" / "data.txt").is_file()
    assert modes(twin.task_root) == ({0o444}, {0o555})


def test_the_runtime_dir_holds_only_the_runtime_packages_with_bytecode(twin: Twin) -> None:
    entries = {p.name for p in twin.runtime_dir.iterdir()} - {"__pycache__"}
    modules = {name.removesuffix(".py") for name in entries if not name.endswith(".dist-info")}
    assert modules == RUNTIME_IMPORTS
    infos = {archive_twin.normalize(n.split("-")[0]) for n in entries if n.endswith(".dist-info")}
    assert infos == PROVIDED_BY_RUNTIME
    version = subprocess.run(
        [str(twin.python), "-c", "import sys; print(sys.implementation.cache_tag)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert (twin.runtime_dir / "boto3" / "__pycache__" / f"__init__.{version}.pyc").is_file()
    assert (twin.runtime_dir / "__pycache__" / f"six.{version}.pyc").is_file()
    assert modes(twin.runtime_dir) == ({0o444}, {0o555})
    assert not set(sys.stdlib_module_names) & modules


def test_the_child_imports_the_archive_and_the_runtime_packages_and_nothing_else(
    twin: Twin, tmp_path: Path
) -> None:
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    command = twin_command(twin, script, json.dumps(twin_sys_path(twin)))
    assert command[:5] == [str(twin.python), "-I", "-S", "-B", str(script)]
    done = subprocess.run(command, capture_output=True, text=True, check=True, env={})
    seen = json.loads(done.stdout)
    assert seen["app"] == str(twin.task_root / "app_pkg" / "__init__.py")
    assert seen["boto3"] == str(twin.runtime_dir / "boto3" / "__init__.py")
    # pydantic is in the development environment, not in this archive: the child must fail.
    assert seen["pydantic"] is None
    assert seen["flags"] == [1, 1, 1]
    assert not any("site-packages" in entry for entry in seen["stdlib"])
    assert twin_sys_path(twin) == [str(twin.task_root), str(twin.runtime_dir)]
    assert twin.python_is_lambdas == (lambda_python() is not None)


def test_a_twin_is_reused_for_the_same_archive_and_remade_for_another(tmp_path: Path) -> None:
    dest = tmp_path / "twin"
    first = prepare_twin(small_archive(tmp_path / "one.zip", 1), dest)
    task_inode = first.task_root.stat().st_ino
    runtime_inode = first.runtime_dir.stat().st_ino

    again = prepare_twin(tmp_path / "one.zip", dest)
    assert again == first
    assert again.task_root.stat().st_ino == task_inode

    changed = prepare_twin(small_archive(tmp_path / "two.zip", 2), dest)
    assert (changed.task_root / "app_pkg" / "__init__.py").read_text() == "VALUE = 2\n"
    assert changed.task_root.stat().st_ino != task_inode
    assert modes(changed.task_root) == ({0o444}, {0o555})
    # The runtime packages did not change: kept as they were.
    assert changed.runtime_dir.stat().st_ino == runtime_inode
    assert sorted(p.name for p in dest.iterdir()) == ["runtime", "task", "twin.json"]

    # A twin whose task root went missing is made again, not trusted.
    archive_twin.remove_tree(changed.task_root)
    remade = prepare_twin(tmp_path / "two.zip", dest)
    assert (remade.task_root / "app_pkg" / "__init__.py").is_file()
    archive_twin.remove_tree(dest)
    assert not dest.exists()


def test_a_missing_archive_is_one_readable_error(tmp_path: Path) -> None:
    with pytest.raises(archive_twin.TwinError, match="build it first"):
        prepare_twin(tmp_path / "missing.zip", tmp_path / "twin")


@pytest.fixture
def fresh_lookup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """An empty PATH and pyenv directory, and no cached answer, for `lambda_python`."""
    if sys.implementation.name == "cpython" and sys.version_info[:2] == (3, 12):
        pytest.skip("this interpreter is CPython 3.12: it is the answer whatever PATH holds")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(archive_twin, "PYENV_VERSIONS", tmp_path / "pyenv-versions")
    lambda_python.cache_clear()
    yield bin_dir
    lambda_python.cache_clear()


def fake_python(path: Path, output: str, status: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho '{output}'\nexit {status}\n")
    path.chmod(0o755)


def test_no_python_312_anywhere_is_none(fresh_lookup: Path) -> None:
    # A pyenv shim for a version that is installed but not selected fails like this one.
    fake_python(fresh_lookup / "python3.12", "pyenv: python3.12: command not found", 127)
    assert lambda_python() is None


def test_a_python_312_is_found_on_path_or_among_pyenvs_versions(fresh_lookup: Path) -> None:
    fake_python(fresh_lookup / "python3.12", "cpython 3 11 /somewhere/python3.11")
    versions = archive_twin.PYENV_VERSIONS
    fake_python(versions / "3.12.1" / "bin" / "python3.12", "cpython 3 12 /pyenv/3.12.1/python")
    fake_python(versions / "3.12.10" / "bin" / "python3.12", "cpython 3 12 /pyenv/3.12.10/python")
    assert lambda_python() == Path("/pyenv/3.12.10/python")


# The real archive, run as Lambda runs it.

CONNECT_PROBE = """
import importlib, json, sys
stdlib = list(sys.path)
sys.path.extend(json.loads(sys.argv[1]))
for name in ("connect", "router", "disconnect", "processor"):
    importlib.import_module(f"streamer_handlers.functions.{name}")
from streamer_handlers._lambda.observability import get_tracer
tracer = get_tracer()
allowed = (*stdlib, *json.loads(sys.argv[1]))
outside = sorted(
    name for name, module in sys.modules.items()
    if name != "__main__" and getattr(module, "__file__", None)
    and (not module.__file__.startswith(allowed) or "site-packages" in module.__file__)
)
print(json.dumps({
    "tracer": None if tracer is None else type(tracer).__name__,
    "aws_xray_sdk": sys.modules["aws_xray_sdk"].__file__,
    "botocore": sys.modules["botocore"].__file__,
    "connect_cached": sys.modules["streamer_handlers.functions.connect"].__cached__,
    "outside": outside,
}))
"""


@pytest.fixture(scope="module")
def host_twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Twin]]:
    archive = ensure_archive("host").path
    dest = tmp_path_factory.mktemp("host-twin") / "twin"
    yield archive, prepare_twin(archive, dest)
    archive_twin.remove_tree(dest)


@pytest.mark.slow
def test_the_host_archive_runs_connect_with_tracing_on_from_the_twin(
    host_twin: tuple[Path, Twin], tmp_path: Path
) -> None:
    archive, twin = host_twin
    with zipfile.ZipFile(archive) as opened:
        tops = {name.split("/")[0] for name in opened.namelist()}
    modules = {name.removesuffix(".py") for name in tops}
    assert not modules & RUNTIME_IMPORTS
    assert not any(t.startswith(("boto3-", "botocore-", "urllib3-")) for t in tops)
    assert {"aws_xray_sdk", "streamer_handlers", "streamer_core", "pydantic"} <= modules
    assert not modules & set(sys.stdlib_module_names)

    script = tmp_path / "connect_probe.py"
    script.write_text(CONNECT_PROBE)
    environment = {
        "POWERTOOLS_TRACE_DISABLED": "false",
        "POWERTOOLS_SERVICE_NAME": "streamer-test",
        "AWS_LAMBDA_FUNCTION_NAME": "streamer-connect-test",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
        "LAMBDA_TASK_ROOT": str(twin.task_root),
        "STREAMER_ENV": "test",
    }
    done = subprocess.run(
        twin_command(twin, script, json.dumps(twin_sys_path(twin))),
        capture_output=True,
        text=True,
        env=environment,
        cwd=twin.task_root,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["tracer"] == "Tracer"
    assert seen["aws_xray_sdk"].startswith(str(twin.task_root))
    assert seen["botocore"].startswith(str(twin.runtime_dir))
    assert seen["outside"] == []


@pytest.mark.slow
@pytest.mark.skipif(
    lambda_python() is None,
    reason="no CPython 3.12 interpreter here: the archive ships without bytecode",
)
def test_the_host_archive_has_bytecode_for_cpython_312(host_twin: tuple[Path, Twin]) -> None:
    archive, twin = host_twin
    with zipfile.ZipFile(archive) as opened:
        names = set(opened.namelist())
    for module in ("streamer_handlers/functions/connect", "aws_xray_sdk/core/recorder"):
        directory, _, stem = module.rpartition("/")
        assert f"{directory}/__pycache__/{stem}.cpython-312.pyc" in names
    assert twin.python_is_lambdas
