/**
 * Keeps one WebSocket to the server alive: connect, heartbeat, age limit, reconnect with backoff.
 *
 * This module moves text frames and knows nothing of their meaning; the client on top of it
 * owns the protocol. The split mirrors the Python client's `connection.py`, and keeps the
 * reconnect machinery free of protocol code.
 *
 * The token is asked for again before every attempt, so an expired token is replaced on
 * reconnect. Where it travels is the caller's choice (see `TokenPlacement`).
 */

import { Deferred, Interrupted, sleep, withTimeout } from "./async.js";
import { Backoff, type BackoffOptions } from "./backoff.js";
import { AuthenticationFailedError, ClientClosedError, ConnectionFailedError } from "./errors.js";
import type { Logger } from "./logger.js";
import type { StateObserver } from "./states.js";

/** An event as WebSocket implementations hand it to listeners; only these fields are read. */
export interface WebSocketEventLike {
  readonly type?: string;
  readonly data?: unknown;
  readonly code?: number;
  readonly reason?: string;
  readonly message?: string;
  readonly error?: unknown;
}

/** The part of the standard `WebSocket` interface the client uses. */
export interface WebSocketLike {
  readonly readyState: number;
  binaryType: string;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: "open" | "message" | "error" | "close", listener: (event: WebSocketEventLike) => void): void;
}

/** A `WebSocket` class: the browser's own, or `WebSocket` from the `ws` package in Node. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/**
 * Where the token travels in the handshake.
 *
 * - `"subprotocol"` (default): offered as `Sec-WebSocket-Protocol: streamer.v1, bearer.<token>`.
 *   Browsers can set this header, and headers stay out of access logs.
 * - `"query"`: `?token=<token>`; the last resort, since URLs are written to access logs.
 * - `"header"`: `Authorization: Bearer <token>`, as the Python client sends it; only for
 *   WebSocket classes that accept `{ headers }` as a third argument (`ws` in Node). Browsers
 *   cannot set this header.
 */
export type TokenPlacement = "subprotocol" | "query" | "header";

/** A token, or a function that returns one (asked before every connection attempt). */
export type TokenSource = string | (() => string | Promise<string>);

export interface LinkOptions {
  readonly WebSocket: WebSocketConstructor;
  readonly token: TokenSource | null;
  readonly tokenPlacement: TokenPlacement;
  readonly subprotocol: string;
  readonly reconnect: boolean;
  readonly maxReconnectAttempts: number | null;
  readonly backoff: BackoffOptions;
  readonly backoffResetAfter: number | null;
  readonly heartbeatInterval: number | null;
  readonly heartbeatTimeout: number;
  readonly maxConnectionAge: number | null;
  readonly openTimeout: number | null;
}

/** What the link needs from the protocol layer above it. */
export interface LinkHooks {
  /** A new socket is up: restore subscriptions and pending work on it. */
  onOpen(): void;
  /** One frame arrived; must not throw. */
  onMessage(data: unknown): void;
  /** The socket is gone and a reconnect will follow. */
  onDown(): void;
  /** The link gave up for good; pending work must fail with `error`. */
  onClosed(error: ConnectionFailedError): void;
  /** Prove the server still answers; rejecting or hanging means the socket is dead. */
  heartbeat(): Promise<void>;
  /** Wait (at most `patience` ms) for answers to frames already written on this socket. */
  drain(patience: number): Promise<void>;
}

const OPEN = 1;
const NORMAL_CLOSURE = 1000;
// How long close() waits for the server to confirm the closing handshake.
const CLOSE_PATIENCE = 1000;
// Refusals of the handshake that say "not now" rather than "never"; any other status is final.
const TRANSIENT_HTTP_STATUSES = new Set([408, 429, 500, 502, 503, 504]);

class AttemptFailed extends Error {
  constructor(
    readonly error: ConnectionFailedError,
    readonly retryable: boolean,
  ) {
    super(error.message);
    this.name = "AttemptFailed";
  }
}

interface Handshake {
  readonly url: string;
  readonly protocols: string[];
  readonly headers: { [name: string]: string } | null;
}

/** Put the token where `placement` says; without a token, offer nothing at all. */
export function handshakeTarget(
  url: string,
  token: string | null,
  placement: TokenPlacement,
  subprotocol: string,
): Handshake {
  if (token === null || token === "") return { url, protocols: [], headers: null };
  switch (placement) {
    case "subprotocol":
      // The server answers with the other offered subprotocol; a browser drops a socket whose
      // handshake picks none of those it offered.
      return { url, protocols: [subprotocol, `bearer.${token}`], headers: null };
    case "query": {
      const target = new URL(url);
      target.searchParams.set("token", token);
      return { url: target.toString(), protocols: [], headers: null };
    }
    case "header":
      return { url, protocols: [], headers: { Authorization: `Bearer ${token}` } };
  }
}

/** The HTTP status of a refused handshake, when the WebSocket implementation reveals it. */
function handshakeStatus(event: WebSocketEventLike | null): number | null {
  if (event === null) return null;
  const error = event.error;
  const texts = [event.message, error instanceof Error ? error.message : undefined];
  for (const text of texts) {
    // `ws` reports a refused upgrade as "Unexpected server response: 401".
    const match = typeof text === "string" ? /Unexpected server response: (\d{3})/.exec(text) : null;
    if (match) return Number(match[1]);
  }
  return null;
}

function failureText(event: WebSocketEventLike | null): string | null {
  if (event === null) return null;
  if (typeof event.message === "string" && event.message) return event.message;
  if (event.error instanceof Error && event.error.message) return event.error.message;
  return null;
}

/** One WebSocket, with its events routed to whoever owns it at the moment. */
class Socket {
  readonly opened = new Deferred<void>();
  readonly closed = new Deferred<void>();
  failure: WebSocketEventLike | null = null;
  private handler: ((data: unknown) => void) | null = null;
  private readonly early: unknown[] = [];
  private detached = false;

  constructor(readonly ws: WebSocketLike) {
    try {
      ws.binaryType = "arraybuffer";
    } catch {
      // Text frames are what the server sends; binary ones are only decoded if possible.
    }
    ws.addEventListener("open", () => this.opened.resolve());
    ws.addEventListener("message", (event) => {
      if (this.detached) return;
      if (this.handler !== null) this.handler(event.data);
      else this.early.push(event.data);
    });
    ws.addEventListener("error", (event) => {
      this.failure ??= event;
    });
    ws.addEventListener("close", () => this.closed.resolve());
  }

  /** Deliver messages to `handler` from now on, those that arrived before it first. */
  attach(handler: (data: unknown) => void): void {
    this.handler = handler;
    for (const data of this.early.splice(0)) handler(data);
  }

  /** Stop delivering anything and close the socket. */
  abandon(code = NORMAL_CLOSURE): void {
    this.detached = true;
    try {
      this.ws.close(code);
    } catch {
      // Already closed, or closing while still connecting: nothing left to do.
    }
  }
}

/** One logical connection made of successive sockets. */
export class Link {
  /** Counts sockets adopted; a frame written on one generation is unanswered on the next. */
  generation = 0;
  private socket: Socket | null = null;
  private supervisor: Promise<void> | null = null;
  private closing = false;
  private renewing = false;
  private readonly stop = new AbortController();
  private readonly backoff: Backoff;

  constructor(
    private readonly url: string,
    private readonly options: LinkOptions,
    private readonly observer: StateObserver,
    private readonly hooks: LinkHooks,
    private readonly logger: Logger,
  ) {
    this.backoff = new Backoff(options.backoff, options.maxReconnectAttempts);
  }

  /** Whether frames can be written right now. */
  get connected(): boolean {
    return this.socket !== null;
  }

  /**
   * How long a socket must stay up before the reconnect backoff starts over.
   *
   * A server that accepts the handshake and drops the socket at once would otherwise be
   * hammered at the initial delay forever.
   */
  private get stableAfter(): number {
    return this.options.backoffResetAfter ?? this.options.backoff.maximum;
  }

  /** Make the first connection, failing fast so that a wrong URL or token is seen at once. */
  async open(): Promise<void> {
    if (this.closing) throw new ClientClosedError("client is closed");
    this.backoff.reset();
    this.observer.set("connecting");
    let socket: Socket;
    try {
      socket = await this.attempt();
    } catch (failure) {
      this.observer.set("closed");
      if (failure instanceof AttemptFailed) throw failure.error;
      if (failure instanceof Interrupted) throw new ClientClosedError("client was closed while connecting");
      throw failure;
    }
    this.adopt(socket);
    this.supervisor = this.supervise(socket);
    this.restore();
  }

  /**
   * Write one frame; `false` only when it certainly did not leave this process.
   *
   * A socket that closes right after the write may or may not have delivered the frame, and
   * the caller must then assume the server got it.
   */
  send(text: string): boolean {
    const socket = this.socket;
    if (socket === null || socket.ws.readyState !== OPEN) return false;
    try {
      socket.ws.send(text);
    } catch (error) {
      this.logger.debug("socket refused a frame", error);
      return false;
    }
    return true;
  }

  /** Stop for good: no reconnect after this. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.stop.abort();
    const socket = this.socket;
    this.socket = null;
    socket?.abandon();
    if (this.supervisor !== null) await this.supervisor;
    if (socket !== null) {
      await withTimeout(socket.closed.promise, CLOSE_PATIENCE, () => new Error("close not confirmed")).catch(
        () => undefined,
      );
    }
    this.observer.set("closed");
  }

  private async resolveToken(): Promise<string | null> {
    const source = this.options.token;
    if (source === null) return null;
    return typeof source === "function" ? await source() : source;
  }

  private async attempt(): Promise<Socket> {
    let token: string | null;
    try {
      token = await this.resolveToken();
    } catch (error) {
      const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      throw new AttemptFailed(new ConnectionFailedError(`token provider failed: ${detail}`), true);
    }
    if (this.closing) throw new Interrupted();
    const target = handshakeTarget(this.url, token, this.options.tokenPlacement, this.options.subprotocol);
    let socket: Socket;
    try {
      const WS = this.options.WebSocket as unknown as new (
        url: string,
        protocols: string[],
        options?: { headers: { [name: string]: string } },
      ) => WebSocketLike;
      const ws =
        target.headers === null
          ? new WS(target.url, target.protocols)
          : new WS(target.url, target.protocols, { headers: target.headers });
      socket = new Socket(ws);
    } catch (error) {
      const detail = error instanceof Error ? error.message : String(error);
      throw new AttemptFailed(new ConnectionFailedError(`cannot connect to ${this.url}: ${detail}`), false);
    }
    return new Promise<Socket>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const finish = (): void => {
        clearTimeout(timer);
        this.stop.signal.removeEventListener("abort", onStop);
      };
      const onStop = (): void => {
        finish();
        socket.abandon();
        reject(new Interrupted());
      };
      const openTimeout = this.options.openTimeout;
      if (openTimeout !== null) {
        timer = setTimeout(() => {
          finish();
          socket.abandon();
          const error = new ConnectionFailedError(`cannot connect to ${this.url}: no handshake within ${openTimeout} ms`);
          reject(new AttemptFailed(error, true));
        }, openTimeout);
      }
      this.stop.signal.addEventListener("abort", onStop, { once: true });
      void socket.opened.promise.then(() => {
        finish();
        resolve(socket);
      });
      void socket.closed.promise.then(() => {
        if (socket.opened.settled) return;
        finish();
        reject(this.refusal(socket.failure));
      });
    });
  }

  /** Classify a handshake that ended before the socket opened. */
  private refusal(event: WebSocketEventLike | null): AttemptFailed {
    const status = handshakeStatus(event);
    if (status === 401 || status === 403) {
      const reason = status === 401 ? "unauthorized" : "forbidden";
      const message = `server refused the connection to ${this.url}: HTTP ${status} (${reason})`;
      return new AttemptFailed(new AuthenticationFailedError(message, status), false);
    }
    if (status !== null) {
      const error = new ConnectionFailedError(`cannot connect to ${this.url}: HTTP ${status}`);
      return new AttemptFailed(error, TRANSIENT_HTTP_STATUSES.has(status));
    }
    const detail =
      failureText(event) ??
      "the server refused the connection or could not be reached (a browser does not say which: " +
        "check the URL, and the token if the server is up)";
    return new AttemptFailed(new ConnectionFailedError(`cannot connect to ${this.url}: ${detail}`), true);
  }

  private adopt(socket: Socket): void {
    this.renewing = false;
    this.socket = socket;
    this.generation += 1;
    this.observer.set("connected");
  }

  private restore(): void {
    try {
      this.hooks.onOpen();
    } catch (error) {
      this.logger.error("restoring state after connecting failed", error);
    }
  }

  private async supervise(first: Socket): Promise<void> {
    let socket = first;
    // open() restores the first socket itself, before returning to the caller.
    let restore = false;
    try {
      for (;;) {
        const upSince = Date.now();
        await this.serve(socket, restore);
        if (this.closing) return;
        if (!this.options.reconnect) throw new ConnectionFailedError("connection to the server was lost");
        if (this.renewing || Date.now() - upSince >= this.stableAfter) {
          this.backoff.reset();
        } else if (this.backoff.exhausted()) {
          // The handshake worked but the socket did not last: that attempt failed too.
          throw new ConnectionFailedError(
            `gave up after ${this.backoff.attempts} reconnect attempts: ` +
              "the server keeps closing the connection right after opening it",
          );
        }
        this.hooks.onDown();
        this.observer.set("reconnecting");
        socket = await this.reconnect(this.renewing);
        this.adopt(socket);
        restore = true;
      }
    } catch (error) {
      if (error instanceof Interrupted || this.closing) return;
      if (error instanceof ConnectionFailedError) {
        this.giveUp(error);
      } else {
        this.logger.error("connection supervisor failed", error);
        this.giveUp(new ConnectionFailedError(`connection failed: ${String(error)}`));
      }
    }
  }

  private giveUp(error: ConnectionFailedError): void {
    if (this.closing) return;
    this.socket = null;
    this.observer.set("closed");
    this.hooks.onClosed(error);
  }

  /**
   * Attempt until a handshake succeeds; the backoff carries over from earlier drops.
   *
   * Only a socket that stayed up resets the backoff, so a server that accepts and drops at
   * once is retried ever more slowly, and `maxReconnectAttempts` still ends it.
   */
  private async reconnect(immediately: boolean): Promise<Socket> {
    const backoff = this.backoff;
    let first = true;
    for (;;) {
      const delay = immediately && first ? 0 : backoff.nextDelay();
      first = false;
      await sleep(delay, this.stop.signal);
      backoff.attempts += 1;
      try {
        return await this.attempt();
      } catch (failure) {
        if (!(failure instanceof AttemptFailed)) throw failure;
        if (!failure.retryable) throw failure.error;
        if (backoff.exhausted()) {
          throw new ConnectionFailedError(`gave up after ${backoff.attempts} reconnect attempts: ${failure.error.message}`);
        }
        this.logger.info(`reconnect attempt ${backoff.attempts} failed: ${failure.error.message}`);
      }
    }
  }

  /** Run one socket until it closes, its heartbeat fails or it reaches its age limit. */
  private async serve(socket: Socket, restore: boolean): Promise<void> {
    const socketScope = new AbortController();
    const ended = new Deferred<void>();
    const end = (): void => ended.resolve();
    void socket.closed.promise.then(end);
    this.stop.signal.addEventListener("abort", end, { once: true });
    socket.attach((data) => {
      try {
        this.hooks.onMessage(data);
      } catch (error) {
        this.logger.error("handling a frame from the server failed", error);
      }
    });
    const interval = this.options.heartbeatInterval;
    if (interval !== null) {
      this.heartbeat(interval, socketScope.signal).then(end, () => undefined);
    }
    // Renewal exists to reconnect before the gateway's limit; without reconnecting it would
    // only end a healthy connection early.
    const maxAge = this.options.maxConnectionAge;
    if (maxAge !== null && this.options.reconnect) {
      this.ageLimit(maxAge, socketScope.signal).then(end, () => undefined);
    }
    try {
      // Reading already runs, so answers to a long replay never back up behind it.
      if (restore) this.restore();
      await ended.promise;
    } finally {
      this.stop.signal.removeEventListener("abort", end);
      if (this.socket === socket) this.socket = null;
      socketScope.abort();
      socket.abandon();
    }
  }

  private async heartbeat(interval: number, signal: AbortSignal): Promise<void> {
    const patience = this.options.heartbeatTimeout;
    for (;;) {
      await sleep(interval, signal);
      try {
        await withTimeout(this.hooks.heartbeat(), patience, () => new Error(`no pong within ${patience} ms`));
      } catch (error) {
        if (signal.aborted) throw new Interrupted();
        this.logger.warn(`heartbeat failed, reconnecting: ${error instanceof Error ? error.message : String(error)}`);
        return;
      }
    }
  }

  private async ageLimit(maxAge: number, signal: AbortSignal): Promise<void> {
    await sleep(maxAge, signal);
    this.logger.info("connection reached its maximum age, renewing it");
    this.renewing = true;
    // New frames wait for the next socket while the old one finishes what it carries: a call
    // cut off mid-flight would have an unknown outcome, and renewal is not a failure.
    this.socket = null;
    try {
      await this.hooks.drain(this.options.heartbeatTimeout);
    } catch (error) {
      this.logger.error("waiting for answers before renewing the connection failed", error);
    }
  }
}
