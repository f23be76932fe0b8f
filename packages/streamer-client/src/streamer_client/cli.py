"""``streamer-client``: call a Streamer API or follow a topic from a shell.

Exit codes: 0 success, 1 the server reported an error, 2 bad usage, 3 cannot connect or
authenticate, 4 timed out, 130 interrupted. Failures print one line on stderr, never a
traceback, so scripts can log them as they are.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TextIO

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

from .client import StreamerClient
from .errors import ConnectionFailed, RemoteError, RequestTimeout, StreamerError
from .subscriptions import Subscription

__all__ = ["main"]

EXIT_OK = 0
EXIT_REMOTE = 1
EXIT_USAGE = 2
EXIT_CONNECTION = 3
EXIT_TIMEOUT = 4
EXIT_INTERRUPTED = 130

# A command-line run should end rather than wait forever for a server that went away.
_CLI_RECONNECT_ATTEMPTS = 5
_BAR_WIDTH = 30


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
    _configure_logging()
    try:
        args = _build_parser().parse_args(argv)
        if not args.url:
            raise _UsageError("no server URL: pass --url or set STREAMER_URL")
        payload = _parse_payload(args.payload) if args.command == "request" else None
    except _UsageError as exc:
        _fail(f"usage error: {exc} (see --help)")
        return EXIT_USAGE
    try:
        if args.command == "request":
            return asyncio.run(_request(args, payload))
        return asyncio.run(_subscribe(args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except RemoteError as exc:
        _fail(f"error: {exc.code}: {exc.message}{_details(exc.details)}")
        return EXIT_REMOTE
    except RequestTimeout as exc:
        _fail(f"timeout: {exc}")
        return EXIT_TIMEOUT
    except ConnectionFailed as exc:
        _fail(f"connection error: {exc}")
        return EXIT_CONNECTION
    except StreamerError as exc:
        _fail(f"error: {exc}")
        return EXIT_REMOTE
    except Exception as exc:
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


async def _request(args: argparse.Namespace, payload: dict[str, Any] | None) -> int:
    request_id = new_request_id()
    printer = (
        _frame_printer(lambda frame: _concerns_request(frame, request_id)) if args.json else None
    )
    bar = None if args.json else _ProgressBar(sys.stderr)
    async with _client(args, printer) as client:
        try:
            result = await client.request(
                args.action,
                payload,
                on_progress=bar.update if bar is not None else None,
                timeout=args.timeout,
                request_id=request_id,
            )
        finally:
            if bar is not None:
                bar.finish()
    if not args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False), flush=True)
    return EXIT_OK


async def _subscribe(args: argparse.Namespace) -> int:
    topic: str = args.topic
    printer = _frame_printer(lambda frame: _concerns_topic(frame, topic)) if args.json else None
    scope = asyncio.timeout(args.timeout)
    try:
        async with scope, _client(args, printer) as client, client.subscribe(topic) as events:
            if not args.json:
                print(f"subscribed to {topic}", file=sys.stderr, flush=True)
            await _print_events(events, args.count, raw=args.json)
    except TimeoutError:
        if scope.expired():
            raise RequestTimeout(f"stopped listening to {topic} after {args.timeout} s") from None
        raise
    return EXIT_OK


async def _print_events(events: Subscription, count: int | None, *, raw: bool) -> None:
    if count is not None and count <= 0:
        return
    received = 0
    async for event in events:
        if not raw:
            print(json.dumps(event.data, ensure_ascii=False), flush=True)
        received += 1
        if count is not None and received >= count:
            return


def _frame_printer(wanted: Callable[[ServerFrame], bool]) -> Callable[[ServerFrame], None]:
    def print_frame(frame: ServerFrame) -> None:
        if wanted(frame):
            print(encode(frame), flush=True)

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


def _configure_logging() -> None:
    """Show the client's warnings as short lines, unless the host application set logging up."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.WARNING, format="streamer-client: %(levelname)s: %(message)s"
        )
