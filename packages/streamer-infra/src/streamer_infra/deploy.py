"""`hatch run infra:build|preview|up|destroy [ENV]`: build the Lambda archive and drive Pulumi.

Every expected failure (no Pulumi CLI, no AWS credentials, no JWT key in the stack config, a
failed build) ends with one line saying what to install or configure and a non-zero exit code;
Pulumi's own output is shown as it runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from streamer_infra.build import Artifact, BuildError, build
from streamer_infra.build import parse_args as parse_build_args

COMMANDS = ("build", "preview", "up", "destroy")
DEFAULT_ENV = "dev"
PULUMI_INSTALL = "https://www.pulumi.com/docs/iac/download-install/"
_STACK_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


class DeployError(RuntimeError):
    """An expected failure; its message is the one line the user sees."""


def project_dir() -> Path:
    """The directory holding Pulumi.yaml (packages/streamer-infra)."""
    return Path(__file__).resolve().parents[2]


def require_aws_extra() -> None:
    """The Pulumi program needs the `aws` extra; without it Pulumi would fail minutes in,
    inside its language host, with a traceback."""
    missing = [name for name in ("pulumi", "pulumi_aws") if importlib.util.find_spec(name) is None]
    if missing:
        raise DeployError(
            f"the Pulumi program needs {', '.join(missing)}: "
            "pip install 'streamer-infra[aws]' (or use `hatch run infra:...`)"
        )


def require_pulumi() -> str:
    """The CLI is not on PyPI, so it cannot come with the hatch environment."""
    pulumi = shutil.which("pulumi")
    if pulumi is None:
        raise DeployError(f"the Pulumi CLI is not installed: install it from {PULUMI_INSTALL}")
    return pulumi


def require_aws_credentials() -> None:
    """Checked locally (no network call): Pulumi would otherwise fail minutes into a run."""
    import boto3

    if boto3.Session().get_credentials() is None:
        raise DeployError(
            "no AWS credentials found: run `aws configure` (or `aws sso login`), "
            "or set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        )


def _run(command: Sequence[str], *, capture: bool = False) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ)
    # Make the Pulumi language host use this interpreter, where streamer_infra is installed.
    environment.setdefault("PULUMI_PYTHON_CMD", sys.executable)
    return subprocess.run(
        list(command),
        cwd=project_dir(),
        env=environment,
        text=True,
        capture_output=capture,
        check=False,
    )


def select_stack(pulumi: str, env: str) -> None:
    """`--create` makes the first `up` of a new environment work without `pulumi stack init`."""
    result = _run([pulumi, "stack", "select", env, "--create"], capture=True)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["unknown error"]
        raise DeployError(f"cannot select or create stack {env!r}: {lines[-1]}")


def require_jwt_key(pulumi: str, env: str) -> None:
    """Checked before the build so a missing key costs seconds, not a whole preview."""
    result = _run([pulumi, "config", "get", "jwtPublicKey", "--stack", env], capture=True)
    if result.returncode != 0:
        raise DeployError(
            f"stack {env!r} has no JWT public key: run `pulumi config set --secret jwtPublicKey "
            f'"$(cat public.pem)" --stack {env}` in {project_dir()}'
        )


def extra_sources() -> list[Path]:
    """Package directories of an application outside the workspace (the one `streamer:app`
    names), from STREAMER_APP_SOURCE, separated like PATH."""
    value = os.environ.get("STREAMER_APP_SOURCE", "")
    return [Path(part) for part in value.split(os.pathsep) if part]


def build_command(extra: Sequence[str]) -> Artifact:
    """`build [--platform lambda|host] [--output DIR] [--source DIR]`: the options of
    `python -m streamer_infra.build`, so `hatch run infra:build --platform host` builds the
    archive `streamer dev --from-build` runs."""
    options = parse_build_args(extra)
    sources = [*extra_sources(), *options.source]
    if options.platform == "lambda":
        return build(options.output, sources)
    return build(options.output, sources, platform=options.platform)


def run(command: str, env: str, extra: Sequence[str]) -> int:
    """One command end to end; returns the exit code Pulumi returned."""
    if command == "build":
        print(build_command(extra).summary())
        return 0
    require_aws_extra()
    pulumi = require_pulumi()
    require_aws_credentials()
    select_stack(pulumi, env)
    if command != "destroy":
        require_jwt_key(pulumi, env)
        print(build(None, extra_sources()).summary())
    return _run([pulumi, command, "--stack", env, *extra]).returncode


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The env is optional (dev) so `hatch run infra:build` needs no argument."""
    parser = argparse.ArgumentParser(
        prog="python -m streamer_infra.deploy",
        description="Build the Lambda archive and run Pulumi for one environment.",
    )
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("env", nargs="?", default=DEFAULT_ENV, help="stack name (default: dev)")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="passed on to pulumi")
    args = parser.parse_args(argv)
    if not _STACK_NAME.match(args.env):
        parser.error(f"invalid stack name {args.env!r}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Expected failures become one line on stderr and exit code 1, never a traceback."""
    args = parse_args(argv)
    try:
        return run(args.command, args.env, args.extra)
    except (DeployError, BuildError) as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
