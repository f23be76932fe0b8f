"""`streamer`: the local stack from the command line (`dev`, `token`, `demo`), and
`publish` to a topic of a local or a deployed stack through its work queue.

Every failure a user can cause (a busy port, a missing key file, a bad `--app`) ends as
one line on stderr and a non-zero exit, never a traceback; Ctrl-C is the normal way to
stop `streamer dev` and exits 0 after clients were closed with 1001.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import importlib.util
import json
import os
import re
import shlex
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from streamer_infra.local._keys import DEFAULT_STATE_DIR, DEV_ISSUER, DevKeys, load_or_create_keys

if TYPE_CHECKING:
    from streamer_core.auth import TokenIssuer

    from streamer_infra.local._stack import LocalStack, LocalStackConfig

__all__ = ["main", "parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_BAR_WIDTH = 30


class CliError(Exception):
    """A problem the user can fix: printed as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise CliError(message)


def parse_duration(text: str) -> float:
    """`90`, `45s`, `30m`, `1h`, `2d` to seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if match is None or float(match.group(1)) <= 0:
        raise CliError(f"invalid duration {text!r}: use a positive number with s, m, h or d")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="streamer", description="Run Streamer on this machine.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    dev = commands.add_parser("dev", help="serve the WebSocket API locally until Ctrl-C")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    dev.add_argument("--stage", default="local")
    dev.add_argument("--app", default=None, help="module:attr of your Streamer app")
    dev.add_argument("--jwt-public-key", type=Path, default=None, metavar="PEM_FILE")
    dev.add_argument("--jwt-private-key", type=Path, default=None, metavar="PEM_FILE")
    dev.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    dev.add_argument(
        "--no-pin-cpu",
        dest="pin_cpu",
        action="store_false",
        help="let the kernel spread the stack's threads over every CPU (default: one CPU)",
    )

    dev.add_argument(
        "--console",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="serve the developer console at / (default: only when --host is a loopback "
        "address; it mints tokens for any user and closes any connection)",
    )
    _add_build_options(dev)
    dev.add_argument(
        "--traces",
        action="store_true",
        help="print each trace segment the functions send (name and duration; --from-build)",
    )

    token = commands.add_parser("token", help="mint a token the local stack accepts")
    token.add_argument("--sub", required=True, help="user id")
    token.add_argument("--tenant", required=True, help="tenant id")
    token.add_argument("--permissions", default="", help="comma-separated, e.g. a,b")
    token.add_argument("--ttl", default="1h", help="lifetime: 3600, 30m, 1h, 2d")
    token.add_argument("--jwt-private-key", type=Path, default=None, metavar="PEM_FILE")
    token.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)

    demo = commands.add_parser("demo", help="start the stack, run echo and a job, stop")
    demo.add_argument("--port", type=int, default=0)
    _add_build_options(demo)
    _add_publish_parser(commands)
    return parser


def _add_build_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--from-build",
        action="store_true",
        help="run the functions from the built Lambda archive, as Lambda's runtime does "
        "(builds this machine's archive, or reuses it when nothing changed)",
    )
    command.add_argument(
        "--archive",
        type=Path,
        default=None,
        metavar="ZIP",
        help="with --from-build: run this archive instead of building one",
    )


def _build_notice(args: argparse.Namespace, out: TextIO) -> None:
    if args.archive is not None and not args.from_build:
        raise CliError("--archive needs --from-build")
    if args.archive is not None and not args.archive.is_file():
        raise CliError(f"no archive at {args.archive}")
    if args.from_build and args.archive is None:
        print(
            "Building the Lambda archive for this machine (reused when nothing changed)...",
            file=out,
            flush=True,
        )


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise CliError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None


def _dev_keys(
    public: Path | None, private: Path | None, state_dir: Path
) -> tuple[DevKeys, str | None]:
    """The key pair and the issuer to require; the user's own keys carry no dev issuer."""
    if public is None and private is None:
        return load_or_create_keys(state_dir), DEV_ISSUER
    private_pem = _read(private, "private key") if private is not None else None
    if public is not None:
        public_pem = _read(public, "public key")
        _check_public_key(public_pem)
    else:
        assert private_pem is not None
        public_pem = _issuer_for(private_pem).public_key_pem
    return DevKeys(public_pem, private_pem), None


def _check_public_key(pem: str) -> None:
    """Refuse a bad key at startup, not at the first connection (which would get a 500)."""
    from streamer_core.auth import KeySet

    try:
        KeySet.from_secret_string(pem)
    except ValueError as exc:
        raise CliError(f"unusable public key: {exc}") from None


def _issuer_for(private_pem: str, issuer: str | None = None) -> TokenIssuer:
    from streamer_core.auth import TokenIssuer

    try:
        return TokenIssuer(private_pem, issuer=issuer)
    except ValueError as exc:
        raise CliError(f"unusable private key: {exc}") from None


# -- streamer token ----------------------------------------------------------------------
def _token(args: argparse.Namespace, out: TextIO) -> int:
    ttl = parse_duration(args.ttl)
    permissions = [p.strip() for p in args.permissions.split(",") if p.strip()]
    if args.jwt_private_key is not None:
        issuer = _issuer_for(_read(args.jwt_private_key, "private key"))
    else:
        keys = load_or_create_keys(args.state_dir)
        assert keys.private_pem is not None
        issuer = _issuer_for(keys.private_pem, DEV_ISSUER)
    print(issuer.issue(args.sub, args.tenant, permissions, ttl=ttl), file=out)
    return 0


# -- streamer dev ------------------------------------------------------------------------
def _dev_config(args: argparse.Namespace) -> LocalStackConfig:
    from streamer_infra.local._stack import LocalStackConfig

    keys, issuer = _dev_keys(args.jwt_public_key, args.jwt_private_key, args.state_dir)
    return LocalStackConfig(
        host=args.host,
        port=args.port,
        stage=args.stage,
        app=args.app,
        keys=keys,
        jwt_issuer=issuer,
        state_dir=args.state_dir,
        pin_cpu=args.pin_cpu,
        server_gc=True,
        from_build=args.from_build,
        archive=args.archive,
        on_trace=_print_trace if args.traces else None,
        console=args.console,
    )


def _print_trace(segment: Any) -> None:
    print(segment.describe(), flush=True)


def _on_loopback(host: str) -> bool:
    from streamer_infra.local._console import is_loopback

    return is_loopback(host)


def _banner(stack: LocalStack, app: str | None, out: TextIO) -> None:
    lines = [
        f"Streamer is running (stage {stack.config.stage!r}, app {app or 'the demo app'})",
        f"  WebSocket URL:        {stack.ws_url}",
        f"  Management endpoint:  {stack.management_url}",
    ]
    if stack.console_url is not None:
        lines.append(f"  Console:              {stack.console_url}")
        if not _on_loopback(stack.config.host):
            lines.append(
                "  Warning: the console is reachable from other machines: it mints tokens "
                "for any user and closes any connection"
            )
    elif stack.config.console is None:
        lines.append("  Console:              off (not a loopback address; --console serves it)")
    if stack.config.from_build:
        lines.append("  Functions:            from the built Lambda archive, one process each")
    try:
        token = stack.token("dev-user", "dev-tenant", ttl=24 * 3600)
    except ValueError:
        lines.append("  Tokens: signed by your identity provider (no private key given)")
        token = "$TOKEN"
    else:
        lines.append(f"  Dev token (user dev-user, tenant dev-tenant, 24 h): {token}")
    example = (
        f"streamer-client --url {stack.ws_url} --token {token} "
        f"request echo {shlex.quote(json.dumps({'hello': 'world'}))}"
    )
    lines += ["Try it:", f"  {example}", "Press Ctrl-C to stop."]
    print("\n".join(lines), file=out, flush=True)


async def _serve_until_signalled(config: LocalStackConfig, out: TextIO) -> None:
    from streamer_infra.local._stack import LocalStack

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with LocalStack(config) as stack, _stack_state(stack):
            _banner(stack, config.app, out)
            await stop.wait()
            counters = stack.gateway.counters
            print(
                f"Stopping: closing {len(stack.gateway.connections)} connection(s) with 1001 "
                f"({counters.connected} accepted, {counters.refused} refused so far)...",
                file=out,
                flush=True,
            )
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    print("Stopped.", file=out, flush=True)


def _require_local_extra(command: str) -> None:
    """`dev` and `demo` run the local stack, which only the `local` extra installs."""
    needed = {"moto": "moto", "aiohttp": "aiohttp", "streamer_client": "streamer-client"}
    missing = [dist for module, dist in needed.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise CliError(
            f"`streamer {command}` needs {', '.join(missing)}: pip install 'streamer-infra[local]'"
        )


def _dev(args: argparse.Namespace, out: TextIO) -> int:
    _require_local_extra("dev")
    if args.traces and not args.from_build:
        raise CliError("--traces needs --from-build: only Lambda's runtime starts the tracer")
    config = _dev_config(args)
    _build_notice(args, out)
    # `--app myapp:app` names a module of the user's project, as `python -m` would find it.
    if args.app and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        asyncio.run(_serve_until_signalled(config, out))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CliError(
                f"port {config.port} on {config.host} is already in use: "
                "pass --port with another port (0 picks a free one)"
            ) from None
        raise CliError(f"cannot listen on {config.host}:{config.port}: {exc}") from None
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        raise CliError(f"cannot load the application: {exc}") from None
    return 0


# -- streamer demo -----------------------------------------------------------------------
class _ProgressBar:
    """A one-line bar on terminals; one line per update when piped."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._tty = out.isatty()

    def __call__(self, frame: Any) -> None:
        filled = int(_BAR_WIDTH * frame.percentage / 100)
        bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
        text = f"[{bar}] {frame.percentage:5.1f}%  {frame.message or ''}"
        if self._tty:
            self._out.write(f"\r{text:<80}")
        else:
            self._out.write(text + "\n")
        self._out.flush()

    def done(self) -> None:
        if self._tty:
            self._out.write("\n")


async def _run_demo(args: argparse.Namespace, out: TextIO) -> None:
    from streamer_client import StreamerClient

    from streamer_infra.local._stack import LocalStack, LocalStackConfig

    with tempfile.TemporaryDirectory(prefix="streamer-demo-") as state:
        config = LocalStackConfig(
            port=args.port,
            state_dir=Path(state),
            from_build=args.from_build,
            archive=args.archive,
            # The handlers' JSON logs would bury the demo's output.
            environment={"POWERTOOLS_LOG_LEVEL": "WARNING"},
        )
        async with LocalStack(config) as stack:
            print(f"Local stack on {stack.ws_url}", file=out)
            token = stack.token("demo-user", "demo-tenant")
            async with StreamerClient(stack.ws_url, token=token) as client:
                echoed = await client.request("echo", {"hello": "streamer"})
                print(f"echo -> {json.dumps(echoed)}", file=out)
                print("generate_report:", file=out, flush=True)
                bar = _ProgressBar(out)
                report = await client.request(
                    "generate_report", {"steps": 5, "title": "demo"}, on_progress=bar
                )
                bar.done()
                print(f"result -> {json.dumps(report)}", file=out)
        print("Demo finished: the stack is stopped.", file=out, flush=True)


def _demo(args: argparse.Namespace, out: TextIO) -> int:
    _require_local_extra("demo")
    _build_notice(args, out)
    asyncio.run(_run_demo(args, out))
    return 0


# -- streamer publish -------------------------------------------------------------------
STACK_STATE_FILE = "stack.json"
"""What a running `streamer dev` leaves in its state dir for `streamer publish`: the
emulator's endpoint and the work queue's URL, which change at every start."""
_SQS_MESSAGE_LIMIT = 256 * 1024


def _add_publish_parser(commands: Any) -> None:
    publish = commands.add_parser(
        "publish",
        help="publish an event to a topic of one tenant through the work queue",
        description="Send a `publish` message to the work queue (docs/protocol.md): the "
        "processor delivers it to every connection of the tenant subscribed to the topic. "
        "Targets the `streamer dev` running with --state-dir by default, a deployed stack "
        "with --stack ENV (its workQueueUrl output, through the Pulumi CLI) or any queue "
        "with --queue-url (AWS credentials from the usual places).",
    )
    publish.add_argument("--tenant", required=True, help="tenant id")
    publish.add_argument("--topic", required=True, help="topic, e.g. prices/eur")
    publish.add_argument(
        "--id", default=None, help="event id (default: derived from the SQS message id)"
    )
    target = publish.add_mutually_exclusive_group()
    target.add_argument("--queue-url", default=None, help="the work queue's URL")
    target.add_argument(
        "--stack", default=None, metavar="ENV", help="a deployed stack: dev, staging, ..."
    )
    publish.add_argument(
        "--endpoint-url", default=None, help="SQS endpoint (an emulator; default: AWS's)"
    )
    publish.add_argument("--region", default=None, help="AWS region (default: the URL's)")
    publish.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    publish.add_argument("data", metavar="DATA", help="the event's data as JSON; - reads stdin")


@contextlib.asynccontextmanager
async def _stack_state(stack: LocalStack) -> AsyncIterator[None]:
    """Write STACK_STATE_FILE while the stack serves; removed when it stops."""
    path = stack.config.state_dir / STACK_STATE_FILE
    state = {
        "pid": os.getpid(),
        "queue_url": stack.resources.queue_url,
        "endpoint_url": stack.aws_endpoint_url,
        "region": stack.config.region,
        "ws_url": stack.ws_url,
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{STACK_STATE_FILE}.{os.getpid()}")
        temporary.write_text(json.dumps(state, indent=2) + "\n")
        temporary.replace(path)
    except OSError as exc:
        print(f"warning: cannot write {path} for `streamer publish`: {exc}", file=sys.stderr)
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()


def _running_stack(state_dir: Path) -> dict[str, Any]:
    path = state_dir / STACK_STATE_FILE
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        raise CliError(
            f"no running `streamer dev` found ({path} does not exist): start one, or "
            "pass --state-dir, --queue-url or --stack"
        ) from None
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from None
    pid = state.get("pid")
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError, ProcessLookupError):
        raise CliError(f"the `streamer dev` that wrote {path} is no longer running") from None
    except PermissionError:
        pass  # alive, another user's
    return dict(state)


def _stack_queue_url(env: str) -> str:
    """The deployed stack's `workQueueUrl` output, read with the Pulumi CLI."""
    import subprocess

    from streamer_infra.deploy import DeployError, project_dir, require_pulumi

    try:
        pulumi = require_pulumi()
    except DeployError as exc:
        raise CliError(f"{exc}, or pass --queue-url") from None
    result = subprocess.run(
        [pulumi, "stack", "output", "workQueueUrl", "--stack", env],
        cwd=project_dir(),
        capture_output=True,
        text=True,
        check=False,
    )
    url = result.stdout.strip()
    if result.returncode != 0 or not url:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["no output"]
        raise CliError(f"cannot read workQueueUrl of stack {env!r}: {lines[-1]}")
    return url


def _queue_region(queue_url: str) -> str | None:
    """`https://sqs.eu-west-1.amazonaws.com/...` names its region."""
    match = re.match(r"https://sqs[.-]([a-z0-9-]+)\.amazonaws\.com", queue_url)
    return match.group(1) if match else None


def _publish_message(args: argparse.Namespace) -> str:
    """The documented `publish` message, checked here so a typo fails at the terminal."""
    from streamer_core import ID_PATTERN, TOPIC_PATTERN

    if not args.tenant or "#" in args.tenant:
        raise CliError("--tenant must be non-empty and free of '#'")
    if not re.fullmatch(TOPIC_PATTERN, args.topic):
        raise CliError(f"--topic {args.topic!r} does not match {TOPIC_PATTERN}")
    if args.id is not None and not re.fullmatch(ID_PATTERN, args.id):
        raise CliError(f"--id {args.id!r} does not match {ID_PATTERN}")
    text = sys.stdin.read() if args.data == "-" else args.data
    try:
        data = json.loads(text)
    except ValueError:
        raise CliError(
            f"DATA must be JSON (a string needs its quotes: '\"{text[:20]}\"')"
        ) from None
    body: dict[str, Any] = {
        "kind": "publish",
        "tenant": args.tenant,
        "topic": args.topic,
        "data": data,
    }
    if args.id is not None:
        body["id"] = args.id
    message = json.dumps(body, separators=(",", ":"))
    if len(message) > _SQS_MESSAGE_LIMIT:
        raise CliError(f"the message is {len(message)} bytes, over SQS's {_SQS_MESSAGE_LIMIT}")
    return message


def _publish(args: argparse.Namespace, out: TextIO) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    message = _publish_message(args)
    client_args: dict[str, Any] = {}
    if args.queue_url is not None:
        queue_url = args.queue_url
    elif args.stack is not None:
        queue_url = _stack_queue_url(args.stack)
    else:
        local = _running_stack(args.state_dir)
        queue_url = str(local["queue_url"])
        client_args = {
            "endpoint_url": local["endpoint_url"],
            "region_name": local["region"],
            # The emulator accepts any key; the user's real ones must not travel there.
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
            "aws_session_token": "testing",
        }
    if args.endpoint_url is not None:
        client_args["endpoint_url"] = args.endpoint_url
    region = args.region or client_args.get("region_name") or _queue_region(queue_url)
    if region is not None:
        client_args["region_name"] = region
    try:
        sqs = boto3.session.Session().client("sqs", **client_args)
        sent = sqs.send_message(QueueUrl=queue_url, MessageBody=message)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise CliError(
            f"SQS refused the message: {error.get('Code')}: {error.get('Message')}"
        ) from None
    except BotoCoreError as exc:
        raise CliError(f"cannot send to {queue_url}: {exc}") from None
    event_id = args.id or f"sqs-{sent['MessageId']}"
    print(
        f"queued event {event_id} for tenant {args.tenant!r}, topic {args.topic!r} "
        f"(SQS message {sent['MessageId']})",
        file=out,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `streamer` console script."""
    out = sys.stdout
    try:
        args = _build_parser().parse_args(argv)
        if args.command == "token":
            return _token(args, out)
        if args.command == "dev":
            return _dev(args, out)
        if args.command == "publish":
            return _publish(args, out)
        return _demo(args, out)
    except CliError as exc:
        print(f"streamer: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        print(f"streamer: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
