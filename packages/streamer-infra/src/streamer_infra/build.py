"""Build the Lambda archive: the handler packages' sources plus their dependencies for Lambda.

One archive serves all four functions. They share every dependency, the whole archive is far
below Lambda's 50 MB direct-upload limit, and a single artifact means one hash to compare and
no layer version to keep in step with the code.

Dependencies are resolved for the target platform first, the whole closure, pinned to the
versions installed in the workspace so the archive runs the code the tests ran. What Lambda's
runtime provides (boto3 and its closure, `archive_twin.PROVIDED_BY_RUNTIME`) is then dropped
however it was reached: a direct requirement or a package's own dependency (`aws-xray-sdk`
requires botocore), since a second botocore would be most of the archive and would shadow the
runtime's.
The rest is installed with `--no-deps`, exactly the resolved versions.

The archive carries bytecode for CPython 3.12, because Lambda's task root is read-only: a
module without `.pyc` is compiled again at every cold start. The `.pyc` files are
unchecked-hash (no source mtimes in them) and record their source as `/var/task/...`, so the
build directory leaves no trace. Where no CPython 3.12 is installed, the archive ships
without bytecode and the build says so.

The archive is reproducible: entries sorted, fixed timestamps and permissions, bytecode only
from the compile step and no install-machine paths, so the same inputs always give the same
SHA-256.

`platform="host"` builds the same pinned versions for this machine instead, for running the
archive here as Lambda would (`archive_twin`, `streamer dev --from-build`); `ensure_archive`
reuses such an archive while its inputs are unchanged.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import logging
import os
import platform as platform_module
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from streamer_infra.archive_twin import (
    LAMBDA_PYTHON,
    LAMBDA_TASK_ROOT,
    PROVIDED_BY_RUNTIME,
    file_sha256,
    lambda_python,
    locked,
    normalize,
)

__all__ = [
    "LAMBDA_PYTHON",
    "PROVIDED_BY_RUNTIME",
    "Artifact",
    "BuildError",
    "BuildTarget",
    "Pin",
    "Platform",
    "build",
    "build_target",
    "default_archive_path",
    "ensure_archive",
]

Platform = Literal["lambda", "host"]
PLATFORMS: tuple[str, ...] = get_args(Platform)
LAMBDA_PLATFORM = "manylinux2014_aarch64"
UV_PLATFORM = "aarch64-manylinux2014"
ENTRY_PACKAGE = "streamer-handlers"
ARCHIVE_NAME = "streamer-lambda.zip"
FINGERPRINT_NAME = "streamer-lambda.fingerprint.json"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o644
# Install-time bookkeeping that varies by machine or path and is never read at runtime.
SKIPPED_NAMES = frozenset({"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"})
SKIPPED_ROOT_FILES = frozenset({".lock"})  # uv's lock file of the --target directory
BYTECODE_DIR = "__pycache__"

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*)(;.*)?$")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;]+)")
_COMPILE_ERROR = re.compile(r"\*\*\* Error compiling '(.+?)'")

log = logging.getLogger(__name__)


class BuildError(RuntimeError):
    """A build step failed; the message says which and what to do."""


@dataclass(frozen=True)
class Requirement:
    """The parts of a PEP 508 line this build needs: name, extras, version spec, marker."""

    name: str
    extras: tuple[str, ...]
    specifier: str
    marker: str

    @classmethod
    def parse(cls, line: str) -> Requirement:
        match = _REQUIREMENT.match(line)
        if match is None:
            raise BuildError(f"cannot read requirement {line!r}")
        name, extras, specifier, marker = match.groups()
        extra_names = tuple(e.strip() for e in (extras or "[]")[1:-1].split(",") if e.strip())
        return cls(name, extra_names, specifier.strip(), (marker or "").strip())

    @property
    def key(self) -> str:
        return normalize(self.name)

    def pinned(self) -> str:
        """Pin to the workspace's installed version; keep the declared range otherwise."""
        extras = f"[{','.join(self.extras)}]" if self.extras else ""
        try:
            spec = f"=={importlib.metadata.version(self.name)}"
        except importlib.metadata.PackageNotFoundError:
            spec = self.specifier
        return f"{self.name}{extras}{spec}{' ' + self.marker if self.marker else ''}"


@dataclass(frozen=True, order=True)
class Pin:
    """One resolved distribution: what the archive holds at exactly this version (the
    resolvers give `name` normalized, so pins sort by project)."""

    name: str
    version: str

    @property
    def key(self) -> str:
        return normalize(self.name)

    @property
    def line(self) -> str:
        return f"{self.key}=={self.version}"


@dataclass(frozen=True)
class WorkspacePackage:
    """A member of the hatch workspace: its requirements and its import package directory."""

    name: str
    source: Path
    dependencies: tuple[str, ...]
    optional: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class BuildTarget:
    """Which wheels to install and which interpreter compiles the bytecode.

    `compiler` is a CPython of `python_version`, or None when none is installed (no bytecode).
    """

    platform: Platform
    pip_platform: str
    uv_platform: str
    python_version: str
    compiler: Path | None

    @property
    def cache_tag(self) -> str | None:
        """The `__pycache__` tag the target's interpreter looks for."""
        if self.compiler is None:
            return None
        return f"cpython-{self.python_version.replace('.', '')}"


@dataclass(frozen=True)
class Artifact:
    """What `build` reports: where the archive is, how big, and its hash."""

    path: Path
    sha256: str
    compressed_bytes: int
    uncompressed_bytes: int
    entries: int
    platform: str = "lambda"
    python_version: str = LAMBDA_PYTHON
    bytecode_files: int = 0

    def summary(self) -> str:
        mib = 1024 * 1024
        bytecode = (
            f"{self.bytecode_files} .pyc for CPython {self.python_version}"
            if self.bytecode_files
            else "no bytecode"
        )
        return (
            f"{self.path}: {self.compressed_bytes / mib:.1f} MiB zipped, "
            f"{self.uncompressed_bytes / mib:.1f} MiB unzipped, {self.entries} files "
            f"({bytecode}), sha256 {self.sha256}"
        )

    @classmethod
    def of(cls, path: Path, platform: str, python_version: str) -> Artifact:
        """Describe an archive already on disk."""
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
        return cls(
            path,
            file_sha256(path),
            path.stat().st_size,
            sum(info.file_size for info in infos),
            len(infos),
            platform,
            python_version,
            sum(1 for info in infos if info.filename.endswith(".pyc")),
        )


def workspace_root() -> Path:
    """The repository root: the directory holding `packages/`."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "packages" / ENTRY_PACKAGE / "pyproject.toml").is_file():
            return parent
    raise BuildError("cannot find the workspace root (a directory with packages/)")


def read_workspace(root: Path) -> dict[str, WorkspacePackage]:
    """Every member under packages/, keyed by normalized project name."""
    members: dict[str, WorkspacePackage] = {}
    for pyproject in sorted((root / "packages").glob("*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
        import_name = project["name"].replace("-", "_")
        members[Requirement.parse(project["name"]).key] = WorkspacePackage(
            name=project["name"],
            source=pyproject.parent / "src" / import_name,
            dependencies=tuple(project.get("dependencies", ())),
            optional={k: tuple(v) for k, v in project.get("optional-dependencies", {}).items()},
        )
    return members


def resolve_closure(
    members: dict[str, WorkspacePackage], entry: str = ENTRY_PACKAGE
) -> tuple[list[WorkspacePackage], list[Requirement]]:
    """Workspace packages reachable from `entry` (shipped as source) and the third-party
    requirements they declare, extras included.

    Runtime-provided requirements stay in the list: they constrain the resolution like any
    other, and are dropped from what is installed afterwards (`install_dependencies`).
    """
    packages: dict[str, WorkspacePackage] = {}
    external: dict[str, Requirement] = {}
    pending = [Requirement.parse(entry)]
    seen: set[tuple[str, tuple[str, ...]]] = set()
    while pending:
        requirement = pending.pop()
        marker = (requirement.key, requirement.extras)
        if marker in seen:
            continue
        seen.add(marker)
        member = members.get(requirement.key)
        if member is None:
            known = external.get(requirement.key)
            extras = tuple(sorted({*requirement.extras, *(known.extras if known else ())}))
            external[requirement.key] = Requirement(
                requirement.name, extras, requirement.specifier, requirement.marker
            )
            continue
        packages[requirement.key] = member
        lines = list(member.dependencies)
        for extra in requirement.extras:
            lines += member.optional.get(extra, ())
        pending += [Requirement.parse(line) for line in lines]
    return sorted(packages.values(), key=lambda p: p.name), sorted(
        external.values(), key=lambda r: r.key
    )


def _host_wheel_platform() -> tuple[str, str]:
    """pip's and uv's names for this machine's wheels, on manylinux2014 as Lambda's."""
    machine = platform_module.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    if sys.platform.startswith("linux"):
        return f"manylinux2014_{machine}", f"{machine}-manylinux2014"
    if sys.platform == "darwin":
        pip_machine = "arm64" if machine == "aarch64" else machine
        return f"macosx_11_0_{pip_machine}", f"{machine}-apple-darwin"
    raise BuildError(f"host builds need Linux or macOS; this is {sys.platform}")


def build_target(platform: Platform = "lambda") -> BuildTarget:
    """Lambda's platform (manylinux2014 aarch64, CPython 3.12), or this machine's.

    A host build keeps Lambda's Python version when a CPython 3.12 is installed to run it,
    and otherwise uses this interpreter's, so the twin can run what was built.
    """
    if platform not in PLATFORMS:
        raise BuildError(f"unknown platform {platform!r}: choose one of {', '.join(PLATFORMS)}")
    compiler = lambda_python()
    if platform == "lambda":
        if compiler is None:
            log.warning(
                "no CPython %s interpreter found: the archive ships without bytecode",
                LAMBDA_PYTHON,
            )
        return BuildTarget("lambda", LAMBDA_PLATFORM, UV_PLATFORM, LAMBDA_PYTHON, compiler)
    pip_platform, uv_platform = _host_wheel_platform()
    if compiler is not None:
        return BuildTarget("host", pip_platform, uv_platform, LAMBDA_PYTHON, compiler)
    current = f"{sys.version_info.major}.{sys.version_info.minor}"
    log.warning(
        "no CPython %s interpreter found: building for this interpreter's Python %s, "
        "without bytecode",
        LAMBDA_PYTHON,
        current,
    )
    return BuildTarget("host", pip_platform, uv_platform, current, None)


def _use_pip() -> bool:
    """pip when the running interpreter has it, else uv (hatch's uv environments have no pip)."""
    try:
        importlib.metadata.version("pip")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _uv() -> str:
    uv = shutil.which("uv")
    if uv is None:
        raise BuildError("neither pip nor uv is available: install one of them")
    return uv


def _pip_platform_args(target: BuildTarget) -> list[str]:
    return [
        "--platform",
        target.pip_platform,
        "--implementation",
        "cp",
        "--python-version",
        target.python_version,
        "--only-binary=:all:",
    ]


def _uv_platform_args(target: BuildTarget) -> list[str]:
    # No interpreter download: with binary wheels only, nothing is built for the target.
    return [
        "--python-platform",
        target.uv_platform,
        "--python-version",
        target.python_version,
        "--only-binary=:all:",
        "--no-python-downloads",
    ]


def _run(command: Sequence[str], what: str, stdin: str | None = None) -> str:
    """Run one installer step; a failure is one line naming the step, not a traceback."""
    result = subprocess.run(list(command), input=stdin, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise BuildError(f"{what} failed: {' / '.join(detail)}")
    return result.stdout


def workspace_constraints() -> list[str]:
    """Every distribution installed here from the index, pinned: a constraint only binds what
    the resolution reaches, so transitive dependencies get the tested versions. Whatever was
    installed from a path or a URL (the workspace members, editable) is no index version."""
    pins: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if not name or dist.read_text("direct_url.json") is not None:
            continue
        pins.setdefault(normalize(name), f"{normalize(name)}=={dist.version}")
    return sorted(pins.values())


def parse_pip_report(report: str) -> list[Pin]:
    """The distributions of `pip install --dry-run --report`."""
    try:
        installs = json.loads(report)["install"]
        return sorted(
            Pin(normalize(item["metadata"]["name"]), item["metadata"]["version"])
            for item in installs
        )
    except (ValueError, KeyError, TypeError) as error:
        raise BuildError(f"cannot read pip's resolution report: {error}") from None


def parse_pinned_lines(text: str) -> list[Pin]:
    """The `name==version` lines of `uv pip compile`'s output."""
    pins = []
    for line in text.splitlines():
        match = _PIN.match(line.strip())
        if match is not None:
            pins.append(Pin(normalize(match.group(1)), match.group(2)))
    return sorted(pins)


def resolve_pins(
    requirements: Sequence[str], target: BuildTarget, constraints: Sequence[str] = ()
) -> list[Pin]:
    """The whole dependency closure of `requirements` for the target platform, nothing
    installed: the step that sees transitive dependencies, so that none can slip in."""
    with tempfile.TemporaryDirectory(prefix="streamer-resolve-") as temp:
        constraint_file = Path(temp) / "constraints.txt"
        constraint_file.write_text("".join(f"{line}\n" for line in constraints))
        what = f"resolving {' '.join(requirements)} for {target.platform}"
        if _use_pip():
            command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed"]
            command += ["--quiet", "--report", "-", "--target", str(Path(temp) / "unused")]
            command += [*_pip_platform_args(target), "--constraint", str(constraint_file)]
            return parse_pip_report(_run([*command, *requirements], what))
        command = [_uv(), "pip", "compile", "-", "--no-header", "--no-annotate", "--quiet"]
        command += [*_uv_platform_args(target), "--constraint", str(constraint_file)]
        return parse_pinned_lines(_run(command, what, stdin="\n".join(requirements) + "\n"))


def install_pins(target_dir: Path, pins: Sequence[Pin], target: BuildTarget) -> None:
    """Install exactly `pins` into `target_dir`, none of their dependencies (already
    resolved, and some of them are the runtime's)."""
    lines = [pin.line for pin in pins]
    what = f"installing {' '.join(lines)} for {target.platform}"
    if _use_pip():
        command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "--quiet"]
        command += [*_pip_platform_args(target), "--target", str(target_dir)]
    else:
        command = [_uv(), "pip", "install", "--no-deps", "--quiet", *_uv_platform_args(target)]
        command += ["--target", str(target_dir)]
    _run([*command, *lines], what)


def install_dependencies(
    target_dir: Path,
    requirements: Sequence[Requirement],
    target: BuildTarget,
    constraints: Sequence[str] = (),
) -> list[Pin]:
    """Resolve, drop what the runtime provides, install the rest; returns what was shipped."""
    resolved = resolve_pins([r.pinned() for r in requirements], target, constraints)
    shipped = [pin for pin in resolved if pin.key not in PROVIDED_BY_RUNTIME]
    if shipped:
        install_pins(target_dir, shipped, target)
    return shipped


def copy_sources(target: Path, sources: Iterable[Path]) -> None:
    """Workspace packages go in as plain source trees, as Lambda imports them from the root."""
    for source in sources:
        if not source.is_dir():
            raise BuildError(f"package source {source} does not exist")
        shutil.copytree(
            source,
            target / source.name,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            dirs_exist_ok=True,
        )


def _is_bytecode(relative: str) -> bool:
    return relative.endswith(".pyc") or f"/{BYTECODE_DIR}/" in f"/{relative}"


def _archive_files(tree: Path, bytecode: Collection[str] = ()) -> list[tuple[str, Path]]:
    """Files that go in, by archive name. Bytecode goes in only when the compile step made
    it (`bytecode`); any other `.pyc` came from an installer or a stray run and is dropped."""
    files = []
    for directory, dirnames, filenames in os.walk(tree):
        here = Path(directory)
        # Console scripts (top-level bin/) carry the build machine's interpreter path.
        dirnames[:] = [d for d in dirnames if not (d == "bin" and here == tree)]
        for filename in filenames:
            path = here / filename
            name = path.relative_to(tree).as_posix()
            if (
                (_is_bytecode(name) and name not in bytecode)
                or (filename in SKIPPED_NAMES and here.name.endswith(".dist-info"))
                or (filename in SKIPPED_ROOT_FILES and here == tree)
            ):
                continue
            files.append((name, path))
    return sorted(files)


def compile_bytecode(tree: Path, python: Path) -> frozenset[str]:
    """Compile every source that goes in with `python`; returns the `.pyc` archive names.

    Unchecked-hash `.pyc` hold no mtime, and a fixed hash seed keeps set constants in one
    order, so the bytes depend on the sources alone. Sources are recorded as Lambda sees them
    (`/var/task/...`), not as the build directory. A file that does not compile (a
    template, a test for another Python) ships as source only, as it would have anyway.
    """
    for cache in sorted(tree.rglob(BYTECODE_DIR), reverse=True):
        if cache.is_dir():
            shutil.rmtree(cache)
    for stray in tree.rglob("*.pyc"):
        stray.unlink()
    sources = [str(path) for name, path in _archive_files(tree) if name.endswith(".py")]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    environment["PYTHONHASHSEED"] = "0"
    command = [str(python), "-S", "-m", "compileall", "-q", "-i", "-"]
    command += ["--invalidation-mode", "unchecked-hash", "-s", str(tree), "-p", LAMBDA_TASK_ROOT]
    done = subprocess.run(
        command,
        input="\n".join(sources) + "\n",
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    failed = _COMPILE_ERROR.findall(done.stdout)
    if done.returncode != 0 and not failed:
        detail = (done.stderr or done.stdout).strip().splitlines()[-1:]
        raise BuildError(f"compiling bytecode with {python} failed: {' '.join(detail)}")
    if failed:
        first = os.path.relpath(failed[0], tree)
        log.warning("%d files do not compile and ship as source only (%s)", len(failed), first)
    return frozenset(
        path.relative_to(tree).as_posix() for path in tree.rglob(f"{BYTECODE_DIR}/*.pyc")
    )


def write_archive(tree: Path, output: Path, bytecode: Collection[str] = ()) -> Artifact:
    """Deterministic zip of `tree`: same files and bytes in, same archive hash out.

    Written beside `output` and moved into place, so a reader never sees half an archive.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    files = _archive_files(tree, bytecode)
    uncompressed = 0
    partial = output.with_name(f".{output.name}.partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for name, path in files:
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o100000 | FILE_MODE) << 16
            info.create_system = 3
            data = path.read_bytes()
            uncompressed += len(data)
            archive.writestr(info, data, compresslevel=9)
    os.replace(partial, output)
    digest = file_sha256(output)
    pycs = sum(1 for name, _ in files if name.endswith(".pyc"))
    return Artifact(
        output, digest, output.stat().st_size, uncompressed, len(files), bytecode_files=pycs
    )


def default_archive_path(platform: Platform = "lambda") -> Path:
    """Where `build` writes and the Pulumi program reads the archive in a checkout; a host
    build goes next to it."""
    directory = "lambda" if platform == "lambda" else f"lambda-{platform}"
    return workspace_root() / "packages" / "streamer-infra" / "build" / directory / ARCHIVE_NAME


def _tree_digest(sources: Sequence[Path]) -> str:
    """Hash of the files `copy_sources` copies, by their names in the archive."""
    digest = hashlib.sha256()
    for source in sources:
        if not source.is_dir():
            raise BuildError(f"package source {source} does not exist")
        for path in sorted(source.rglob("*")):
            relative = path.relative_to(source).as_posix()
            if path.is_dir() or _is_bytecode(relative):
                continue
            digest.update(f"{source.name}/{relative}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _build_rules_digest() -> str:
    """A change to how archives are made (this module, the runtime's package set) makes every
    earlier archive stale."""
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for module in ("build.py", "archive_twin.py"):
        digest.update((here / module).read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class _Plan:
    """Everything a build is made from; `inputs` is what its fingerprint records."""

    target: BuildTarget
    archive: Path
    sources: list[Path]
    requirements: list[Requirement]
    constraints: list[str]
    inputs: dict[str, Any]


def _plan(platform: Platform, output_dir: Path | None, extra_sources: Sequence[Path]) -> _Plan:
    target = build_target(platform)
    members = read_workspace(workspace_root())
    packages, requirements = resolve_closure(members)
    sources = [p.source for p in packages] + [Path(s) for s in extra_sources]
    inputs = {
        "platform": target.platform,
        "wheel_platform": target.pip_platform,
        "python": target.python_version,
        "bytecode": target.cache_tag,
        "requirements": [r.pinned() for r in requirements],
        "sources": _tree_digest(sources),
        "build_rules": _build_rules_digest(),
    }
    archive = output_dir / ARCHIVE_NAME if output_dir else default_archive_path(platform)
    constraints = workspace_constraints()
    return _Plan(target, archive, sources, requirements, constraints, inputs)


def _run_plan(plan: _Plan) -> Artifact:
    target = plan.target
    with tempfile.TemporaryDirectory(prefix="streamer-lambda-") as temp:
        tree = Path(temp) / "tree"
        tree.mkdir()
        shipped = install_dependencies(tree, plan.requirements, target, plan.constraints)
        copy_sources(tree, plan.sources)
        bytecode = compile_bytecode(tree, target.compiler) if target.compiler else frozenset()
        written = write_archive(tree, plan.archive, bytecode)
    artifact = Artifact(
        written.path,
        written.sha256,
        written.compressed_bytes,
        written.uncompressed_bytes,
        written.entries,
        target.platform,
        target.python_version,
        written.bytecode_files,
    )
    fingerprint = {
        "inputs": plan.inputs,
        "shipped": [pin.line for pin in sorted(shipped)],
        "archive_sha256": artifact.sha256,
    }
    partial = plan.archive.with_name(f".{FINGERPRINT_NAME}.partial")
    partial.write_text(json.dumps(fingerprint, indent=2, sort_keys=True) + "\n")
    os.replace(partial, plan.archive.with_name(FINGERPRINT_NAME))
    return artifact


def _reusable(plan: _Plan) -> Artifact | None:
    """The archive on disk if its fingerprint matches `plan` and it is the archive the
    fingerprint describes; None when it must be built."""
    try:
        recorded = json.loads(plan.archive.with_name(FINGERPRINT_NAME).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(recorded, dict) or recorded.get("inputs") != plan.inputs:
        return None
    if not plan.archive.is_file() or file_sha256(plan.archive) != recorded.get("archive_sha256"):
        return None
    # Transitive versions are pinned to what is installed: a dependency upgraded here since
    # the build makes the archive stale, even when the direct requirements are unchanged.
    for line in recorded.get("shipped", ()):
        name, _, version = str(line).partition("==")
        try:
            if importlib.metadata.version(name) != version:
                return None
        except importlib.metadata.PackageNotFoundError:
            continue
    return Artifact.of(plan.archive, plan.target.platform, plan.target.python_version)


def build(
    output_dir: Path | None = None,
    extra_sources: Sequence[Path] = (),
    *,
    platform: Platform = "lambda",
) -> Artifact:
    """The full build: resolve, install for the platform, add sources, compile, zip.

    `extra_sources` adds an application package (the one `streamer:app` names) to the
    archive. A fingerprint of the inputs is written next to the archive for `ensure_archive`.
    """
    plan = _plan(platform, output_dir, extra_sources)
    with locked(plan.archive):
        return _run_plan(plan)


def ensure_archive(
    platform: Platform = "host",
    extra_sources: Sequence[Path] = (),
    output_dir: Path | None = None,
) -> Artifact:
    """The archive for `platform`, built only when it is missing or its inputs changed.

    `streamer dev --from-build` and the tests call this at every start: the inputs are the
    workspace sources that go in, the pinned requirements (and the installed versions of
    everything the last build shipped), the platform, the Python version and these build
    rules. Reuse costs reading and hashing the sources and the archive.
    """
    plan = _plan(platform, output_dir, extra_sources)
    # A test, a benchmark and `streamer dev` may all ask for the host archive at once.
    with locked(plan.archive):
        existing = _reusable(plan)
        if existing is not None:
            return existing
        return _run_plan(plan)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The build's options, shared with `python -m streamer_infra.deploy build`."""
    parser = argparse.ArgumentParser(prog="python -m streamer_infra.build", description=__doc__)
    parser.add_argument("--output", type=Path, help="directory for the archive")
    parser.add_argument(
        "--source", type=Path, action="append", default=[], help="extra package directory"
    )
    parser.add_argument(
        "--platform",
        choices=PLATFORMS,
        default="lambda",
        help="lambda (default: manylinux2014 aarch64, CPython 3.12) or host (this machine)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m streamer_infra.build`: a failed step is one line on stderr, exit code 1."""
    args = parse_args(argv)
    try:
        artifact = build(args.output, args.source, platform=args.platform)
    except BuildError as exc:
        print(f"build failed: {exc}", file=sys.stderr)
        return 1
    print(artifact.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
