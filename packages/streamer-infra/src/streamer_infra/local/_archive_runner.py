"""What `streamer dev --from-build` runs: this machine's twin of the deployment's archive.

The archive is built for this machine's platform from the same pinned versions as the one
`hatch run infra:build` makes for Lambda (or reused while nothing it is made of changed), then
unpacked as a read-only task root beside the packages Lambda's runtime provides
(`archive_twin`). An application outside the workspace (`--app myapp:app`) goes into the
archive as it would for a deployment.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from streamer_infra.archive_twin import LAMBDA_PYTHON, prepare_twin
from streamer_infra.build import ensure_archive, workspace_root
from streamer_infra.local._processes import ArchiveRuntime

__all__ = ["app_sources", "archive_runtime"]

logger = logging.getLogger("streamer.local")

TWIN_DIR = "lambda-twin"


def app_sources(app: str | None) -> tuple[Path, ...]:
    """The source of `app`'s top-level package when the workspace does not already ship it."""
    if not app:
        return ()
    top = app.partition(":")[0].split(".")[0]
    spec = importlib.util.find_spec(top)
    if spec is None:
        raise ImportError(f"cannot find the application module {top!r}")
    if spec.submodule_search_locations:
        source = Path(next(iter(spec.submodule_search_locations)))
    elif spec.origin:
        source = Path(spec.origin)
    else:
        raise ImportError(f"the application module {top!r} has no source file to package")
    packages = workspace_root() / "packages"
    if source.resolve().is_relative_to(packages.resolve()):
        return ()
    return (source,)


def _twin_dir(archive: Path, state_dir: Path) -> Path:
    """Beside the archive, so that every stack (and `streamer demo`'s throwaway state) reuses
    one unpacked twin; in the state directory when the archive's directory is not writable."""
    beside = archive.parent / f"{archive.stem}.{TWIN_DIR}"
    if os.access(archive.parent, os.W_OK):
        return beside
    return state_dir / TWIN_DIR


def archive_runtime(
    archive: Path | None,
    state_dir: Path,
    environment: Mapping[str, str],
    xray_daemon_address: str,
    app: str | None = None,
) -> ArchiveRuntime:
    """Build or reuse the archive, prepare its twin under `state_dir`, say what will run."""
    if archive is None:
        logger.info("building (or reusing) the Lambda archive for this machine")
        archive = ensure_archive("host", app_sources(app)).path
    twin = prepare_twin(archive, _twin_dir(archive, state_dir))
    version = LAMBDA_PYTHON
    if not twin.python_is_lambdas:
        import sys

        version = "{}.{}".format(*sys.version_info[:2])
        logger.warning(
            "CPython %s (Lambda's runtime) is not installed: running the archive with %s",
            LAMBDA_PYTHON,
            twin.python,
        )
    return ArchiveRuntime(
        python=twin.python,
        task_root=twin.task_root,
        runtime_dir=twin.runtime_dir,
        environment=dict(environment),
        python_version=version,
        xray_daemon_address=xray_daemon_address,
    )
