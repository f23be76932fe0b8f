"""``streamer-client``: call a Streamer API or follow a topic from a shell.

Exit codes: 0 success, 1 the server reported an error, 2 bad usage, 3 cannot connect or
authenticate, 4 timed out, 130 interrupted. Failures print one line on stderr, never a
traceback (unless ``--verbose``), so scripts can log them as they are. A reader that stops
reading (``streamer-client subscribe news | head -1``) ends the run quietly with 0, as it does
for other Unix tools.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn, TextIO, TypeVar

from streamer_core import (
    EventFrame,
    ProgressFrame,
    ServerFrame,
    StatusFrame,
    SubscribedFrame,
    UnsubscribedFrame,
    encode,
    new_request_id,
)

from streamer_client._client import StreamerClient
from streamer_client._errors import (
    ConnectionFailed,
    InvalidRequest,
    RemoteError,
    RequestTimeout,
    StreamerError,
)
from streamer_client._subscriptions import Subscription

__all__ = ["main"]

T = TypeVar("T")

EXIT_OK = 0
EXIT_REMOTE = 1
EXIT_USAGE = 2
EXIT_CONNECTION = 3
EXIT_TIMEOUT = 4
EXIT_INTERRUPTED = 130

# How a failure on this side is reported: the first class it is an instance of decides.
_FAILURES: tuple[tuple[type[StreamerError], str, int], ...] = (
    (InvalidRequest, "usage error", EXIT_USAGE),
    (RequestTimeout, "timeout", EXIT_TIMEOUT),
    (ConnectionFailed, "connection error", EXIT_CONNECTION),
    (StreamerError, "error", EXIT_REMOTE),
)

# A command-line run should end rather than wait forever for a server that went away.
_CLI_RECONNECT_ATTEMPTS = 5
_BAR_WIDTH = 30
_LOG_FORMAT = "streamer-client: %(levelname)s: %(message)s"


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse prints usage plus a message; one line is what scripts and people need."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="streamer-client",
        description="Send requests to a Streamer WebSocket API or follow one of its topics.",
    )
    parser.add_argument(
        "--url", default=os.environ.get("STREAMER_URL"), help="WebSocket URL ($STREAMER_URL)"
    )
    parser.add_argument(
        "--token", default=os.environ.get("STREAMER_TOKEN"), help="JWT ($STREAMER_TOKEN)"
    )
    parser.add_argument(
        "--query-token",
        action="store_true",
        help="send the token as ?token= instead of the Authorization header",
    )
    parser.add_argument(
        "--json", action="store_true", help="print raw server frames, one JSON object per line"
    )
    parser.add_argument("--timeout", type=float, default=None, help="give up after SECONDS")
    parser.add_argument(
        "--verbose", action="store_true", help="log debug details and tracebacks on stderr"
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    request = commands.add_parser("request", help="run an action and print its result")
    request.add_argument("action")
    request.add_argument("payload", nargs="?", default=None, help="JSON object")
    subscribe = commands.add_parser("subscribe", help="print a topic's events as they come")
    subscribe.add_argument("topic")
    subscribe.add_argument("--count", type=int, default=None, help="stop after N events")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    try:
        args = _build_parser().parse_args(argv)
        if not args.url:
            raise _UsageError("no server URL: pass --url or set STREAMER_URL")
        payload = _parse_payload(args.payload) if args.command == "request" else None
    except _UsageError as exc:
        _fail(f"usage error: {exc} (see --help)")
        return EXIT_USAGE
    with _logging_to_stderr(verbose=args.verbose):
        return _run(args, payload)


def _run(args: argparse.Namespace, payload: dict[str, Any] | None) -> int:
    try:
        if args.command == "request":
            return asyncio.run(_request(args, payload))
        return asyncio.run(_subscribe(args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except RemoteError as exc:
        _fail(f"error: {exc.code}: {exc.message}{_details(exc.details)}")
        return EXIT_REMOTE
    except StreamerError as exc:
        what, code = next((what, code) for kind, what, code in _FAILURES if isinstance(exc, kind))
        _fail(f"{what}: {exc}")
        return code
    except Exception as exc:
        if args.verbose:
            traceback.print_exc()
        _fail(f"unexpected error: {type(exc).__name__}: {exc}")
        return EXIT_REMOTE


def _parse_payload(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _UsageError(f"payload is not valid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(value, dict):
        raise _UsageError("payload must be a JSON object")
    return value


def _client(
    args: argparse.Namespace, on_frame: Callable[[ServerFrame], object] | None
) -> StreamerClient:
    return StreamerClient(
        args.url,
        token=args.token or None,
        query_token=args.query_token,
        max_reconnect_attempts=_CLI_RECONNECT_ATTEMPTS,
        on_frame=on_frame,
    )


class _Stdout:
    """Writes the run's output; notices when the reader went away (``| head -1``).

    Writing to a closed pipe raises ``BrokenPipeError``; from inside the client's frame callback
    that would be logged and retried on every frame forever. Instead the run stops, and stdout
    is pointed at devnull so that the interpreter's final flush cannot fail once more.
    """

    def __init__(self) -> None:
        self.gone = asyncio.Event()

    def line(self, text: str) -> None:
        if self.gone.is_set():
            return
        try:
            print(text, flush=True)
        except BrokenPipeError:
            _silence_stdout()
            self.gone.set()

    async def unless_gone(self, work: Coroutine[Any, Any, T]) -> tuple[bool, T | None]:
        """Run ``work`` until it ends or the reader leaves; ``(False, None)`` in the latter case."""
        task = asyncio.ensure_future(work)
        gone = asyncio.ensure_future(self.gone.wait())
        try:
            await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            gone.cancel()
            task.cancel()
            raise
        gone.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return False, None
        return True, task.result()


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError):
        # stdout is not a file descriptor (embedded or captured): replace the object instead.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 -- lives as long as the process


async def _request(args: argparse.Namespace, payload: dict[str, Any] | None) -> int:
    request_id = new_request_id()
    out = _Stdout()
    printer = (
        _frame_printer(out, lambda frame: _concerns_request(frame, request_id))
        if args.json
        else None
    )
    bar = None if args.json else _ProgressBar(sys.stderr)
    async with _client(args, printer) as client:
        try:
            finished, result = await out.unless_gone(
                client.request(
                    args.action,
                    payload,
                    on_progress=bar.update if bar is not None else None,
                    timeout=args.timeout,
                    request_id=request_id,
                )
            )
        finally:
            if bar is not None:
                bar.finish()
    if finished and not args.json:
        out.line(json.dumps(result, indent=2, ensure_ascii=False))
    return EXIT_OK


async def _subscribe(args: argparse.Namespace) -> int:
    topic: str = args.topic
    out = _Stdout()
    printer = (
        _frame_printer(out, lambda frame: _concerns_topic(frame, topic)) if args.json else None
    )
    scope = asyncio.timeout(args.timeout)
    try:
        async with scope, _client(args, printer) as client, client.subscribe(topic) as events:
            if not args.json:
                print(f"subscribed to {topic}", file=sys.stderr, flush=True)
            await out.unless_gone(_print_events(events, args.count, out=None if args.json else out))
    except TimeoutError:
        if scope.expired():
            raise RequestTimeout(f"stopped listening to {topic} after {args.timeout} s") from None
        raise
    return EXIT_OK


async def _print_events(events: Subscription, count: int | None, *, out: _Stdout | None) -> None:
    """Count events (printing their data unless frames are printed raw) up to ``count``."""
    if count is not None and count <= 0:
        return
    received = 0
    async for event in events:
        if out is not None:
            out.line(json.dumps(event.data, ensure_ascii=False))
        received += 1
        if count is not None and received >= count:
            return


def _frame_printer(
    out: _Stdout, wanted: Callable[[ServerFrame], bool]
) -> Callable[[ServerFrame], None]:
    def print_frame(frame: ServerFrame) -> None:
        if wanted(frame):
            out.line(encode(frame))

    return print_frame


def _concerns_request(frame: ServerFrame, request_id: str) -> bool:
    if isinstance(frame, StatusFrame):
        return frame.snapshot.request_id == request_id
    return getattr(frame, "request_id", None) == request_id


def _concerns_topic(frame: ServerFrame, topic: str) -> bool:
    if isinstance(frame, EventFrame | SubscribedFrame | UnsubscribedFrame):
        return frame.topic == topic
    return False


class _ProgressBar:
    """Redraws one line on a terminal; prints one line per update when piped to a file."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._live = stream.isatty()
        self._drawn = False

    def update(self, frame: ProgressFrame) -> None:
        filled = round(_BAR_WIDTH * frame.percentage / 100)
        bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
        line = f"[{bar}] {frame.percentage:5.1f}%"
        if frame.message:
            line += f" {frame.message}"
        if self._live:
            self._stream.write(f"\r\x1b[2K{line}")
        else:
            self._stream.write(f"{line}\n")
        self._stream.flush()
        self._drawn = True

    def finish(self) -> None:
        if self._live and self._drawn:
            self._stream.write("\n")
            self._stream.flush()


def _details(details: dict[str, Any]) -> str:
    return f" {json.dumps(details, ensure_ascii=False)}" if details else ""


def _fail(message: str) -> None:
    print(f"streamer-client: {message}", file=sys.stderr, flush=True)


class _OneLineFormatter(logging.Formatter):
    """A log record as one line: the exception's type and message stay, its traceback goes.

    The promise of the command line is one clear line per problem; tracebacks are for
    ``--verbose``.
    """

    def format(self, record: logging.LogRecord) -> str:
        error = record.exc_info[1] if record.exc_info else None
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            line = super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved
        if error is not None:
            line += f" ({type(error).__name__}: {error})"
        return line.replace("\n", " ")


@contextmanager
def _logging_to_stderr(*, verbose: bool) -> Iterator[None]:
    """Route the client's log records to stderr for the run, in the CLI's own format.

    Installed on the package logger (and removed afterwards) rather than the root logger, so
    that a host that calls ``main`` in-process keeps its own logging setup.
    """
    logger = logging.getLogger("streamer_client")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(_LOG_FORMAT) if verbose else _OneLineFormatter(_LOG_FORMAT)
    )
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
