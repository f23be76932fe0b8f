"""Build the Lambda archive: the handler packages' sources plus their dependencies for Lambda.

One archive serves all four functions. They share every dependency, the whole archive is far
below Lambda's 50 MB direct-upload limit, and a single artifact means one hash to compare and
no layer version to keep in step with the code.

Dependencies are installed for Lambda's platform (manylinux2014 aarch64, CPython 3.12), pinned
to the versions installed in the workspace so the archive runs the code the tests ran. boto3
and botocore are left out: the Lambda runtime ships them, and they would double the archive.

The archive is reproducible: entries sorted, fixed timestamps and permissions, no bytecode and
no install-machine paths, so the same inputs always give the same SHA-256.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

LAMBDA_PLATFORM = "manylinux2014_aarch64"
UV_PLATFORM = "aarch64-manylinux2014"
LAMBDA_PYTHON = "3.12"
ENTRY_PACKAGE = "streamer-handlers"
ARCHIVE_NAME = "streamer-lambda.zip"
PROVIDED_BY_RUNTIME = frozenset({"boto3", "botocore", "s3transfer", "jmespath"})
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o644
# Install-time bookkeeping that varies by machine or path and is never read at runtime.
SKIPPED_NAMES = frozenset({"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"})
SKIPPED_DIRS = frozenset({"__pycache__", "bin"})
SKIPPED_ROOT_FILES = frozenset({".lock"})  # uv's lock file of the --target directory

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*)(;.*)?$")


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
        return re.sub(r"[-_.]+", "-", self.name).lower()

    def pinned(self) -> str:
        """Pin to the workspace's installed version; keep the declared range otherwise."""
        extras = f"[{','.join(self.extras)}]" if self.extras else ""
        try:
            spec = f"=={importlib.metadata.version(self.name)}"
        except importlib.metadata.PackageNotFoundError:
            spec = self.specifier
        return f"{self.name}{extras}{spec}{' ' + self.marker if self.marker else ''}"


@dataclass(frozen=True)
class WorkspacePackage:
    """A member of the hatch workspace: its requirements and its import package directory."""

    name: str
    source: Path
    dependencies: tuple[str, ...]
    optional: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class Artifact:
    """What `build` reports: where the archive is, how big, and its hash."""

    path: Path
    sha256: str
    compressed_bytes: int
    uncompressed_bytes: int
    entries: int

    def summary(self) -> str:
        mib = 1024 * 1024
        return (
            f"{self.path}: {self.compressed_bytes / mib:.1f} MiB zipped, "
            f"{self.uncompressed_bytes / mib:.1f} MiB unzipped, {self.entries} files, "
            f"sha256 {self.sha256}"
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
    requirements they declare, extras included."""
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
            if requirement.key not in PROVIDED_BY_RUNTIME:
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


def _installer(target: Path, requirements: Sequence[str]) -> list[str]:
    """pip when the running interpreter has it, else uv (hatch's uv environments have no pip)."""
    common = ["--only-binary=:all:", "--python-version", LAMBDA_PYTHON, "--target", str(target)]
    try:
        importlib.metadata.version("pip")
    except importlib.metadata.PackageNotFoundError:
        uv = shutil.which("uv")
        if uv is None:
            raise BuildError("neither pip nor uv is available: install one of them") from None
        return [uv, "pip", "install", "--python-platform", UV_PLATFORM, *common, *requirements]
    pip = [sys.executable, "-m", "pip", "install", "--platform", LAMBDA_PLATFORM]
    return [*pip, "--implementation", "cp", "--no-compile", "--quiet", *common, *requirements]


def install_dependencies(target: Path, requirements: Sequence[Requirement]) -> None:
    """Download aarch64 wheels into `target`; a failure names the packages, not a traceback."""
    pins = [r.pinned() for r in requirements]
    command = _installer(target, pins)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise BuildError(f"installing {' '.join(pins)} for Lambda failed: {' / '.join(detail)}")


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


def _archive_files(tree: Path) -> list[tuple[str, Path]]:
    files = []
    for directory, dirnames, filenames in os.walk(tree):
        here = Path(directory)
        # Console scripts (top-level bin/) carry the build machine's interpreter path.
        dirnames[:] = [
            d for d in dirnames if d not in SKIPPED_DIRS or (d == "bin" and here != tree)
        ]
        for filename in filenames:
            if (
                filename.endswith(".pyc")
                or (filename in SKIPPED_NAMES and here.name.endswith(".dist-info"))
                or (filename in SKIPPED_ROOT_FILES and here == tree)
            ):
                continue
            path = here / filename
            files.append((path.relative_to(tree).as_posix(), path))
    return sorted(files)


def write_archive(tree: Path, output: Path) -> Artifact:
    """Deterministic zip of `tree`: same files and bytes in, same archive hash out."""
    output.parent.mkdir(parents=True, exist_ok=True)
    files = _archive_files(tree)
    uncompressed = 0
    with zipfile.ZipFile(output, "w") as archive:
        for name, path in files:
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o100000 | FILE_MODE) << 16
            info.create_system = 3
            data = path.read_bytes()
            uncompressed += len(data)
            archive.writestr(info, data, compresslevel=9)
    digest = hashlib.sha256(output.read_bytes()).hexdigest()
    return Artifact(output, digest, output.stat().st_size, uncompressed, len(files))


def default_archive_path() -> Path:
    """Where `build` writes and the Pulumi program reads the archive in a checkout."""
    return workspace_root() / "packages" / "streamer-infra" / "build" / "lambda" / ARCHIVE_NAME


def build(output_dir: Path | None = None, extra_sources: Sequence[Path] = ()) -> Artifact:
    """The full build: resolve, install for Lambda, add sources, zip. `extra_sources` adds an
    application package (the one `streamer:app` names) to the archive."""
    root = workspace_root()
    packages, requirements = resolve_closure(read_workspace(root))
    archive = output_dir / ARCHIVE_NAME if output_dir else default_archive_path()
    with tempfile.TemporaryDirectory(prefix="streamer-lambda-") as temp:
        tree = Path(temp) / "tree"
        tree.mkdir()
        install_dependencies(tree, requirements)
        copy_sources(tree, [p.source for p in packages] + list(extra_sources))
        return write_archive(tree, archive)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m streamer_infra.build`: a failed step is one line on stderr, exit code 1."""
    parser = argparse.ArgumentParser(prog="python -m streamer_infra.build", description=__doc__)
    parser.add_argument("--output", type=Path, help="directory for the archive")
    parser.add_argument(
        "--source", type=Path, action="append", default=[], help="extra package directory"
    )
    args = parser.parse_args(argv)
    try:
        artifact = build(args.output, args.source)
    except BuildError as exc:
        print(f"build failed: {exc}", file=sys.stderr)
        return 1
    print(artifact.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
