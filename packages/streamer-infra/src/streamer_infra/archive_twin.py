"""The archive twin: the Lambda archive unpacked and run the way Lambda's python3.12 runtime does.

A test or a benchmark that imports the handlers from the development environment can pass
because that environment has a package the archive lacks (moto brings `aws-xray-sdk`, for
one). The twin removes that possibility: a child interpreter started with
:func:`twin_command` imports only the standard library, the unpacked archive and the packages
Lambda's runtime provides, nothing else.

What Lambda gives a python3.12 function, and how the twin stands for it:

- CPython 3.12 (:func:`lambda_python`); where it is not installed, the current interpreter,
  and :attr:`Twin.python_is_lambdas` says so.
- The archive unpacked in a read-only task root (`/var/task`): files 0o444, directories
  0o555 (:attr:`Twin.task_root`).
- boto3 and its closure in the runtime's site-packages, with their bytecode: copies of the
  same distributions from this environment, compiled for the twin's interpreter
  (:attr:`Twin.runtime_dir`). They are pure Python, so the copies serve any platform. They
  are copies, not links, so the twin never writes into this environment and its own
  directories can be made read-only as Lambda's are.
- Lambda searches the task root before the standard library and its site-packages after it.
  Nothing in the archive or the runtime packages has a standard-library module's name (the
  tests check), so standard library + :func:`twin_sys_path` imports the same modules.

The twin's interpreter runs with ``-B``. Lambda cannot write bytecode into its read-only
task root, so a module shipped without ``.pyc`` is compiled again at every cold start; on a
development machine the twin usually runs as a user who can write to a 0o555 directory
(root ignores the mode), and without ``-B`` the first start would leave ``__pycache__``
behind and make every later start look faster than Lambda's. ``-B`` never stops reading the
bytecode the archive ships.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

LAMBDA_PYTHON = "3.12"
LAMBDA_TASK_ROOT = "/var/task"
PROVIDED_BY_RUNTIME = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"}
)
"""Distributions Lambda's python3.12 runtime provides (boto3 and its whole closure), by
normalized project name. The build leaves them out of the archive however they are reached;
the twin provides them as the runtime does."""

TASK_DIR = "task"
RUNTIME_DIR = "runtime"
STAMP_NAME = "twin.json"
FILE_MODE = 0o444
DIR_MODE = 0o555
PYENV_VERSIONS = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"

_PROBE = "import sys; print(sys.implementation.name, *sys.version_info[:2], sys.executable)"


class TwinError(RuntimeError):
    """The twin cannot be made; the message says what is missing."""


@dataclass(frozen=True)
class Twin:
    """Where a twin lives and which interpreter runs it (see :func:`prepare_twin`)."""

    task_root: Path
    runtime_dir: Path
    python: Path
    python_is_lambdas: bool


def normalize(name: str) -> str:
    """PEP 503 form of a project name, the form :data:`PROVIDED_BY_RUNTIME` uses."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _cpython_312(candidate: str | os.PathLike[str]) -> Path | None:
    """The real executable behind `candidate` if it runs as CPython 3.12 (a pyenv shim exists
    for every installed version but fails when that version is not selected)."""
    try:
        done = subprocess.run(
            [os.fspath(candidate), "-S", "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    fields = done.stdout.split(maxsplit=3)
    if done.returncode != 0 or len(fields) != 4:
        return None
    implementation, major, minor, executable = fields
    if (implementation, f"{major}.{minor}") != ("cpython", LAMBDA_PYTHON):
        return None
    return Path(executable.strip())


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.name))


@functools.cache
def lambda_python() -> Path | None:
    """A CPython 3.12 interpreter (Lambda's minor version), or None when none is installed.

    Looked up on PATH and among pyenv's versions, each candidate run once to confirm it; the
    answer is cached for the process.
    """
    if sys.implementation.name == "cpython" and sys.version_info[:2] == (3, 12):
        return Path(sys.executable)
    candidates: list[str | Path] = []
    found = shutil.which(f"python{LAMBDA_PYTHON}")
    if found is not None:
        candidates.append(found)
    if PYENV_VERSIONS.is_dir():
        versions = sorted(PYENV_VERSIONS.glob(f"{LAMBDA_PYTHON}.*"), key=_version_key)
        candidates += [v / "bin" / f"python{LAMBDA_PYTHON}" for v in reversed(versions)]
    for candidate in candidates:
        executable = _cpython_312(candidate)
        if executable is not None:
            return executable
    return None


def twin_python() -> tuple[Path, bool]:
    """The interpreter a twin runs on and whether it is Lambda's version."""
    python = lambda_python()
    return (python, True) if python is not None else (Path(sys.executable), False)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def make_writable(path: Path) -> None:
    """Give the owner write access to every directory under `path` (not through links), so a
    read-only tree can be removed or replaced."""
    if path.is_symlink() or not path.exists():
        return
    if path.is_dir():
        path.chmod(0o755)
        for directory, dirnames, _ in os.walk(path):
            for name in dirnames:
                child = Path(directory) / name
                if not child.is_symlink():
                    child.chmod(0o755)


def remove_tree(path: Path) -> None:
    """Remove `path` even when it was made read-only; a link is removed, never followed."""
    if path.is_symlink() or path.is_file():
        path.unlink()
        return
    if path.exists():
        make_writable(path)
        shutil.rmtree(path)


def make_read_only(path: Path) -> None:
    """Files 0o444, directories 0o555, as Lambda mounts the task root."""
    for directory, dirnames, filenames in os.walk(path, topdown=False):
        here = Path(directory)
        for name in filenames:
            child = here / name
            if not child.is_symlink():
                child.chmod(FILE_MODE)
        for name in dirnames:
            child = here / name
            if not child.is_symlink():
                child.chmod(DIR_MODE)
    path.chmod(DIR_MODE)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """One process at a time makes `path` (a lock file beside it); the others, let in after,
    find it made and current instead of making it again under each other's feet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with (path.parent / f".{path.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def runtime_distributions() -> dict[str, importlib.metadata.Distribution]:
    """This environment's copy of every runtime-provided distribution."""
    found: dict[str, importlib.metadata.Distribution] = {}
    for name in sorted(PROVIDED_BY_RUNTIME):
        try:
            found[name] = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise TwinError(
                f"{name} is not installed here, and Lambda's runtime provides it: "
                "install boto3 in this environment"
            ) from None
    return found


def _top_level_entries(dist: importlib.metadata.Distribution) -> list[Path]:
    """The site-packages entries a distribution installed (packages, modules, its
    .dist-info), from its RECORD."""
    entries: set[Path] = set()
    for file in dist.files or ():
        parts = Path(str(file)).parts
        if not parts or parts[0] in {"..", "__pycache__"} or parts[0].endswith(".pth"):
            continue
        entries.add(Path(str(dist.locate_file(parts[0]))))
    if not entries:
        raise TwinError(f"cannot list the files of {dist.metadata['Name']} (no RECORD)")
    return sorted(entries)


def _runtime_key(python: Path) -> dict[str, object]:
    versions = {name: dist.version for name, dist in runtime_distributions().items()}
    return {"python": str(python), "versions": versions}


def _make_runtime(target: Path, python: Path) -> None:
    target.mkdir(parents=True)
    for dist in runtime_distributions().values():
        for entry in _top_level_entries(dist):
            if entry.is_dir():
                shutil.copytree(
                    entry, target / entry.name, ignore=shutil.ignore_patterns("__pycache__")
                )
            elif entry.is_file():
                shutil.copy2(entry, target / entry.name)
    # Lambda's runtime packages were installed by pip, which compiles them: give the copies
    # bytecode for the twin's interpreter, or every start would compile boto3 as well.
    done = subprocess.run(
        [str(python), "-S", "-m", "compileall", "-q", str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        detail = (done.stdout or done.stderr).strip().splitlines()[-1:]
        raise TwinError(f"compiling the runtime packages failed: {' '.join(detail)}")
    make_read_only(target)


def _make_task_root(target: Path, archive: Path) -> None:
    target.mkdir(parents=True)
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(target)
    make_read_only(target)


def _replace(final: Path, make: Callable[[Path], None]) -> None:
    """Make the new tree beside the old one, then swap, so a failure leaves no half tree
    where a later start would trust it."""
    fresh = final.with_name(f".{final.name}-new")
    remove_tree(fresh)
    try:
        make(fresh)
    except BaseException:
        remove_tree(fresh)
        raise
    remove_tree(final)
    fresh.rename(final)


def _read_stamp(path: Path) -> dict[str, object]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def prepare_twin(archive: Path, dest: Path) -> Twin:
    """Unpack `archive` into `dest` as Lambda would run it, or reuse what an earlier call
    made there.

    Every ``streamer dev --from-build`` start calls this, so the task root is kept while the
    archive's SHA-256 is the one recorded in `dest`'s stamp, and the runtime packages while
    the interpreter and their versions are unchanged.
    """
    if not archive.is_file():
        raise TwinError(f"no archive at {archive}: build it first")
    python, is_lambdas = twin_python()
    dest = dest.resolve()
    task_root, runtime_dir, stamp_path = dest / TASK_DIR, dest / RUNTIME_DIR, dest / STAMP_NAME
    with locked(dest):
        dest.mkdir(parents=True, exist_ok=True)
        stamp = _read_stamp(stamp_path)
        wanted = {"archive_sha256": file_sha256(archive), "runtime": _runtime_key(python)}
        if stamp != wanted or not task_root.is_dir() or not runtime_dir.is_dir():
            stamp_path.unlink(missing_ok=True)
            if stamp.get("runtime") != wanted["runtime"] or not runtime_dir.is_dir():
                _replace(runtime_dir, lambda fresh: _make_runtime(fresh, python))
            if stamp.get("archive_sha256") != wanted["archive_sha256"] or not task_root.is_dir():
                _replace(task_root, lambda fresh: _make_task_root(fresh, archive))
            stamp_path.write_text(json.dumps(wanted, indent=2, sort_keys=True) + "\n")
    return Twin(task_root, runtime_dir, python, is_lambdas)


def twin_sys_path(twin: Twin) -> list[str]:
    """What the child appends to its `sys.path` (the standard library alone under ``-I -S``)
    before importing anything: the task root first, as Lambda searches it first."""
    return [str(twin.task_root), str(twin.runtime_dir)]


def twin_command(
    twin: Twin,
    script: Path | str,
    *args: str,
    python_flags: Sequence[str] = (),
) -> list[str]:
    """The argv of a child that runs `script` in the twin's interpreter.

    ``-I`` ignores PYTHON* variables and the user's site and leaves the script's directory off
    the path; ``-S`` skips site-packages and .pth hooks; ``-B`` (see the module docstring)
    keeps bytecode out of the read-only trees. `python_flags` go before the script
    (``("-X", "importtime")``).
    """
    return [str(twin.python), "-I", "-S", "-B", *python_flags, str(script), *args]
