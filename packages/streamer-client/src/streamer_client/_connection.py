"""Keeps one WebSocket to the server alive: connect, heartbeat, age limit, reconnect with backoff.

This module moves text frames and knows nothing of their meaning; the client on top of it owns
the protocol. The split keeps the reconnect machinery testable on its own and keeps protocol code
free of socket handling, the way httpx separates transports from the client.

websockets' own reconnecting iterator (``async for ws in connect(...)``) fixes the handshake
headers when it is created, but a ``token_provider`` must be asked again before every attempt so
that an expired token is replaced; hence this loop, which still uses websockets' classification
of transient and fatal errors and its connection object.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from streamer_core.limits import IDLE_TIMEOUT_SECONDS, MAX_CONNECTION_SECONDS
from websockets.asyncio.client import connect as websockets_connect
from websockets.client import process_exception
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI
from websockets.protocol import State

from streamer_client._errors import AuthenticationFailed, ConnectionFailed
from streamer_client._states import ConnectionState, StateObserver

__all__ = [
    "ClientSocket",
    "ConnectionOptions",
    "Connector",
    "Link",
    "LinkHooks",
    "TokenProvider",
    "backoff_delays",
    "handshake_target",
    "retry_delay",
]

logger = logging.getLogger("streamer_client")

TokenProvider = Callable[[], str | Awaitable[str]]

# API Gateway closes idle connections after 10 minutes and every connection after 2 hours:
# ping well inside the first, renew five minutes before the second.
DEFAULT_HEARTBEAT_INTERVAL = IDLE_TIMEOUT_SECONDS * 0.4
DEFAULT_MAX_CONNECTION_AGE = MAX_CONNECTION_SECONDS - 300.0

# Refusals of the handshake that say "not now" rather than "never": request timeout and rate
# limiting (a gateway throttling a reconnect storm) besides the 5xx websockets already retries.
_TRANSIENT_HTTP_STATUSES = frozenset({408, 429})

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, kw_only=True)
class ConnectionOptions:
    """How hard the client tries to stay connected.

    The defaults suit API Gateway: a ping every 4 minutes keeps the 10-minute idle timeout away,
    and the link is renewed 5 minutes before the 2-hour lifetime ends so that the server never
    cuts it in the middle of a burst.
    """

    reconnect: bool = True
    max_reconnect_attempts: int | None = None
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    backoff_factor: float = 2.0
    heartbeat_interval: float | None = DEFAULT_HEARTBEAT_INTERVAL
    heartbeat_timeout: float = 30.0
    max_connection_age: float | None = DEFAULT_MAX_CONNECTION_AGE
    open_timeout: float | None = 10.0
    query_token: bool = False
    backoff_reset_after: float | None = None

    @property
    def stable_after(self) -> float:
        """How long a socket must stay up before the reconnect backoff starts over.

        A server that accepts the handshake and drops the socket at once would otherwise be
        hammered at ``backoff_initial`` forever; by default a socket must outlive the longest
        backoff delay to prove the server is healthy again.
        """
        if self.backoff_reset_after is not None:
            return self.backoff_reset_after
        return self.backoff_max


def retry_delay(attempt: int, initial: float, maximum: float, factor: float) -> float:
    """The jittered delay before retry ``attempt`` (1-based), shaped like :func:`backoff_delays`."""
    delay = min(maximum, initial * factor ** max(0, attempt - 1))
    half = delay / 2
    return half + random.uniform(0, half)


def backoff_delays(initial: float, maximum: float, factor: float) -> Iterator[float]:
    """Yield exponentially growing delays with "equal jitter".

    Half of each delay is random so that many clients dropped by the same outage do not come
    back in lockstep, and the other half is kept so that no attempt follows another instantly.
    """
    delay = initial
    while True:
        half = delay / 2
        yield half + random.uniform(0, half)
        delay = min(maximum, delay * factor)


def handshake_target(
    url: str, token: str | None, *, query_token: bool
) -> tuple[str, dict[str, str]]:
    """Place the token where the gateway expects it: a header by default, the query when asked.

    Headers keep tokens out of access logs; the query string exists for gateways and browsers that
    cannot set handshake headers.
    """
    if token is None:
        return url, {}
    if not query_token:
        return url, {"Authorization": f"Bearer {token}"}
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    query.append(("token", token))
    return urlunsplit(parts._replace(query=urlencode(query))), {}


class ClientSocket(Protocol):
    """What the link uses of an open WebSocket (websockets' ``ClientConnection`` has all of it)."""

    @property
    def state(self) -> State:
        """``State.OPEN`` while frames can be written."""

    async def send(self, message: str, /) -> None:
        """Write one text frame; raises websockets' ``ConnectionClosed`` on a closed socket."""

    async def close(self) -> None:
        """Close the socket; returns once it is closed."""

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        """The frames received, ending (or raising ``ConnectionClosed``) when the socket closes."""


class Connector(Protocol):
    """Opens one socket: the client's one seam to the network.

    websockets' ``connect`` is the default; ``streamer_client.testing.MockServer.connect`` is an
    in-memory server, the way httpx's ``MockTransport`` replaces its network transport. A
    connector must fail as websockets' ``connect`` does (``InvalidStatus`` for a refused
    handshake, ``OSError`` for an unreachable server), because the link tells a retry from a
    final refusal by those exceptions.
    """

    def __call__(
        self,
        uri: str,
        /,
        *,
        additional_headers: dict[str, str],
        open_timeout: float | None,
        user_agent_header: str,
    ) -> Awaitable[ClientSocket]:
        """Open a socket to ``uri`` with the handshake headers (the token travels there)."""


class LinkHooks(Protocol):
    """What the link needs from the protocol layer above it."""

    async def on_open(self) -> None:
        """A new socket is up: restore subscriptions and pending work on it."""

    def on_message(self, data: str | bytes) -> None:
        """One frame arrived; must not raise."""

    def on_down(self) -> None:
        """The socket is gone and a reconnect will follow."""

    def on_closed(self, error: ConnectionFailed) -> None:
        """The link gave up for good; pending work must fail with ``error``."""

    async def heartbeat(self) -> None:
        """Prove the server still answers; raising or hanging means the socket is dead."""

    async def drain(self, patience: float) -> None:
        """Wait (at most ``patience`` seconds) for answers to frames already written on this socket.

        Called before the link closes a healthy socket on purpose (renewal), so that calls in
        flight are answered rather than left with an unknown outcome.
        """


class _AttemptFailed(Exception):
    def __init__(self, error: ConnectionFailed, *, retryable: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.retryable = retryable


class _Backoff:
    """Reconnect attempts and their growing delays since the last socket that stayed up."""

    def __init__(self, options: ConnectionOptions) -> None:
        self._options = options
        self.attempts = 0
        self._delays = self._fresh()

    def _fresh(self) -> Iterator[float]:
        options = self._options
        return backoff_delays(options.backoff_initial, options.backoff_max, options.backoff_factor)

    def reset(self) -> None:
        self.attempts = 0
        self._delays = self._fresh()

    def next_delay(self) -> float:
        return next(self._delays)

    def exhausted(self) -> bool:
        limit = self._options.max_reconnect_attempts
        return limit is not None and self.attempts >= limit


class Link:
    """One logical connection made of successive sockets."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None,
        token_provider: TokenProvider | None,
        options: ConnectionOptions,
        observer: StateObserver,
        hooks: LinkHooks,
        connect: Connector | None = None,
    ) -> None:
        self._url = url
        self._connect: Connector = connect if connect is not None else websockets_connect
        self._token = token
        self._token_provider = token_provider
        self._options = options
        self._observer = observer
        self._hooks = hooks
        self._ws: ClientSocket | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False
        self._renewing = False
        self._backoff = _Backoff(options)
        # Every timed wait goes through here, so tests can drive time instead of waiting for it.
        self._sleep: Sleep = asyncio.sleep
        self.generation = 0

    @property
    def connected(self) -> bool:
        """Whether frames can be written right now."""
        return self._ws is not None

    async def open(self) -> None:
        """Make the first connection, failing fast so that a wrong URL or token is seen at once."""
        self._backoff.reset()
        self._observer.set(ConnectionState.CONNECTING)
        try:
            ws = await self._attempt()
        except _AttemptFailed as failed:
            self._observer.set(ConnectionState.CLOSED)
            raise failed.error from failed.__cause__
        self._adopt(ws)
        self._supervisor = asyncio.create_task(self._supervise(ws), name="streamer-client-link")
        await self._restore()

    async def send(self, text: str) -> bool:
        """Write one frame; ``False`` only when it certainly did not leave this process.

        A socket that closes during the write may or may not have delivered the frame, and the
        caller must then assume the server got it: resending a frame the server already acted
        on is exactly what the client must never do blindly.
        """
        ws = self._ws
        if ws is None or ws.state is not State.OPEN:
            return False
        try:
            await ws.send(text)
        except ConnectionClosed:
            logger.debug("socket closed while a frame was being written")
        return True

    async def close(self) -> None:
        """Stop for good: no reconnect after this."""
        self._closing = True
        supervisor, self._supervisor = self._supervisor, None
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        if supervisor is not None:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        self._observer.set(ConnectionState.CLOSED)

    async def _resolve_token(self) -> str | None:
        if self._token_provider is None:
            return self._token
        value = self._token_provider()
        if inspect.isawaitable(value):
            value = await value
        return value

    async def _attempt(self) -> ClientSocket:
        try:
            token = await self._resolve_token()
        except Exception as exc:
            error = ConnectionFailed(f"token provider failed: {type(exc).__name__}: {exc}")
            raise _AttemptFailed(error, retryable=True) from exc
        url, headers = handshake_target(self._url, token, query_token=self._options.query_token)
        try:
            return await self._connect(
                url,
                additional_headers=headers,
                open_timeout=self._options.open_timeout,
                user_agent_header="streamer-client",
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in _TRANSIENT_HTTP_STATUSES:
                error = ConnectionFailed(f"cannot connect to {self._url}: HTTP {status}")
                raise _AttemptFailed(error, retryable=True) from exc
            if status in (401, 403):
                reason = "unauthorized" if status == 401 else "forbidden"
                auth_error = AuthenticationFailed(
                    f"server refused the connection to {self._url}: HTTP {status} ({reason})",
                    status,
                )
                raise _AttemptFailed(auth_error, retryable=False) from exc
            error = ConnectionFailed(f"cannot connect to {self._url}: HTTP {status}")
            raise _AttemptFailed(error, retryable=process_exception(exc) is None) from exc
        except InvalidURI as exc:
            error = ConnectionFailed(f"invalid WebSocket URL: {self._url}")
            raise _AttemptFailed(error, retryable=False) from exc
        except Exception as exc:
            detail = str(exc) or type(exc).__name__
            error = ConnectionFailed(f"cannot connect to {self._url}: {detail}")
            raise _AttemptFailed(error, retryable=process_exception(exc) is None) from exc

    async def _supervise(self, ws: ClientSocket) -> None:
        # open() already restored the first socket, before returning to the caller.
        restore = False
        loop = asyncio.get_running_loop()
        try:
            while True:
                up_since = loop.time()
                await self._serve(ws, restore=restore)
                if self._closing:
                    return
                if not self._options.reconnect:
                    raise ConnectionFailed("connection to the server was lost")
                if self._renewing or loop.time() - up_since >= self._options.stable_after:
                    self._backoff.reset()
                elif self._backoff.exhausted():
                    # The handshake worked but the socket did not last: that attempt failed too.
                    raise ConnectionFailed(
                        f"gave up after {self._backoff.attempts} reconnect attempts: "
                        "the server keeps closing the connection right after opening it"
                    )
                self._hooks.on_down()
                self._observer.set(ConnectionState.RECONNECTING)
                ws = await self._reconnect(immediately=self._renewing)
                self._adopt(ws)
                restore = True
        except ConnectionFailed as error:
            self._give_up(error)
        except Exception as exc:
            logger.exception("connection supervisor failed")
            self._give_up(ConnectionFailed(f"connection failed: {exc}"))

    def _adopt(self, ws: ClientSocket) -> None:
        """Make ``ws`` the socket frames are written to, before anyone else can write."""
        self._renewing = False
        self._ws = ws
        self.generation += 1
        self._observer.set(ConnectionState.CONNECTED)

    async def _restore(self) -> None:
        try:
            await self._hooks.on_open()
        except Exception:
            logger.exception("restoring state after connecting failed")

    def _give_up(self, error: ConnectionFailed) -> None:
        if self._closing:
            return
        self._ws = None
        self._observer.set(ConnectionState.CLOSED)
        self._hooks.on_closed(error)

    async def _reconnect(self, *, immediately: bool) -> ClientSocket:
        """Attempt until a handshake succeeds; the backoff carries over from earlier drops.

        Only a socket that stayed up resets the backoff (see ``stable_after``), so a server that
        accepts and drops at once is retried ever more slowly, and ``max_reconnect_attempts``
        still ends it.
        """
        backoff = self._backoff
        first = True
        while True:
            delay = 0.0 if immediately and first else backoff.next_delay()
            first = False
            await self._sleep(delay)
            backoff.attempts += 1
            try:
                return await self._attempt()
            except _AttemptFailed as failed:
                if not failed.retryable:
                    raise failed.error from failed.__cause__
                if backoff.exhausted():
                    raise ConnectionFailed(
                        f"gave up after {backoff.attempts} reconnect attempts: {failed.error}"
                    ) from failed.__cause__
                logger.info("reconnect attempt %d failed: %s", backoff.attempts, failed.error)

    async def _serve(self, ws: ClientSocket, *, restore: bool) -> None:
        """Run one socket until it closes, its heartbeat fails or it reaches its age limit."""
        watchers = [asyncio.create_task(self._read(ws))]
        if self._options.heartbeat_interval is not None:
            watchers.append(asyncio.create_task(self._heartbeat(self._options.heartbeat_interval)))
        # Renewal exists to reconnect before the gateway's limit; without reconnecting it would
        # only end a healthy connection early.
        if self._options.max_connection_age is not None and self._options.reconnect:
            watchers.append(asyncio.create_task(self._age_limit(self._options.max_connection_age)))
        try:
            if restore:
                # Reading already runs, so answers to a long replay never back up behind it.
                await self._restore()
            await asyncio.wait(watchers, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if self._ws is ws:
                self._ws = None
            for watcher in watchers:
                watcher.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            await ws.close()

    async def _read(self, ws: ClientSocket) -> None:
        try:
            async for message in ws:
                try:
                    self._hooks.on_message(message)
                except Exception:
                    logger.exception("handling a frame from the server failed")
        except ConnectionClosed:
            return

    async def _heartbeat(self, interval: float) -> None:
        while True:
            await self._sleep(interval)
            try:
                await asyncio.wait_for(self._hooks.heartbeat(), self._options.heartbeat_timeout)
            except Exception as exc:
                logger.warning("heartbeat failed, reconnecting: %s", exc or type(exc).__name__)
                return

    async def _age_limit(self, max_age: float) -> None:
        await self._sleep(max_age)
        logger.info("connection reached its maximum age, renewing it")
        self._renewing = True
        # New frames wait for the next socket while the old one finishes what it carries: a
        # call cut off mid-flight would have an unknown outcome, and renewal is not a failure.
        self._ws = None
        try:
            await self._hooks.drain(self._options.heartbeat_timeout)
        except Exception:
            logger.exception("waiting for answers before renewing the connection failed")
