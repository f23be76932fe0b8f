/**
 * The client: requests, jobs and subscriptions over one self-healing WebSocket.
 *
 * Every client frame that expects an answer is a *call* keyed by its id until the answer
 * arrives. After a reconnect the client replays what the new socket must know: topics are
 * subscribed again, accepted jobs are re-attached with `status` (the server keeps their
 * progress and result), and requests queued while disconnected are sent. That is how a job
 * survives any number of reconnects and still ends exactly once.
 *
 * A request written on a socket that dropped before any answer is different: the server may
 * have run it. It de-duplicates asynchronous actions by request id, but runs a synchronous
 * action again if the same frame comes twice, and the client cannot tell the two kinds apart
 * before the first answer. Such a call therefore fails with `OutcomeUnknownError` unless the
 * caller opted in with `resendUnanswered: true` because its actions are idempotent or
 * asynchronous.
 *
 * This is a port of the Python client (`streamer_client`); its behaviour is the reference, and
 * the README lists where the two differ.
 */

import { Interrupted, Stopper, sleep, withTimeout } from "./async.js";
import { retryDelay, type BackoffOptions } from "./backoff.js";
import { Call, CallDropped, CallTable, type CallOptions } from "./calls.js";
import {
  ClientClosedError,
  ConnectionFailedError,
  InvalidRequestError,
  OutcomeUnknownError,
  RemoteError,
  RequestTimeoutError,
  StreamerError,
  remoteError,
} from "./errors.js";
import {
  ERROR_CODES,
  FrameError,
  TERMINAL_STATUSES,
  TOPIC_PATTERN,
  encodeClientFrame,
  parseServerFrame,
  type ClientFrame,
  type ErrorCode,
  type ErrorFrame,
  type EventFrame,
  type JsonObject,
  type JsonValue,
  type ProgressFrame,
  type RequestSnapshot,
  type RequestStatus,
  type ServerFrame,
} from "./frames.js";
import { newRequestId } from "./ids.js";
import { Job, type JobOwner, type WaitOptions } from "./jobs.js";
import {
  Link,
  type TokenPlacement,
  type TokenSource,
  type WebSocketConstructor,
} from "./link.js";
import { defaultLogger, type Logger } from "./logger.js";
import { StateObserver, type ConnectionState, type StateListener } from "./states.js";
import { Subscription, TopicRegistry, type TopicEntry } from "./subscriptions.js";

// API Gateway closes idle connections after 10 minutes and every connection after 2 hours: a
// ping every 4 minutes keeps the first away, and renewing 5 minutes early the second.
export const DEFAULT_HEARTBEAT_INTERVAL = 240_000;
export const DEFAULT_MAX_CONNECTION_AGE = 2 * 3_600_000 - 300_000;
// Well under the server's default of 100 messages a minute, leaving room for the topics and
// jobs a reconnect restores in the same burst.
export const DEFAULT_MAX_QUEUED = 50;

// Errors after which asking again for a job's status cannot succeed; any other is transient.
const FINAL_STATUS_ERRORS: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "NOT_FOUND",
  "FORBIDDEN",
  "UNAUTHORIZED",
  "VALIDATION_ERROR",
]);
const STATUS_RETRY_CODES: ReadonlySet<ErrorCode> = new Set(ERROR_CODES.filter((code) => !FINAL_STATUS_ERRORS.has(code)));
// Restoring a socket sends a burst (every topic, every job, the offline queue) that can exceed
// the server's per-connection rate; the refused part is sent again rather than lost.
const RESTORE_RETRY_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>(["RATE_LIMITED"]);
// With the default backoff the retries span more than the server's 60-second rate window.
const RETRY_LIMIT = 10;
const UNSUBSCRIBE_WAIT = 5_000;
// Event ids remembered to drop an event delivered twice (for example around a reconnect).
const RECENT_EVENTS = 1024;

/** How the client connects and how hard it tries to stay connected. Durations are in ms. */
export interface StreamerClientOptions {
  /** The token, or a function (sync or async) asked before every connection attempt. */
  token?: TokenSource | undefined;
  /** The WebSocket class; defaults to the platform's. In Node 20 pass `WebSocket` from `ws`. */
  WebSocket?: WebSocketConstructor | undefined;
  /** Where the token travels; `"subprotocol"` by default (see the README for why). */
  tokenPlacement?: TokenPlacement | undefined;
  /** The subprotocol offered next to the token and echoed by the server. */
  subprotocol?: string | undefined;
  /** Reconnect after a drop (default true). */
  reconnect?: boolean | undefined;
  /** Give up after this many failed attempts in a row; null (default) never gives up. */
  maxReconnectAttempts?: number | null | undefined;
  backoffInitial?: number | undefined;
  backoffMax?: number | undefined;
  backoffFactor?: number | undefined;
  /** How long a socket must stay up to reset the backoff; default `backoffMax`. */
  backoffResetAfter?: number | null | undefined;
  /** A `ping` this often keeps idle connections open; null turns the heartbeat off. */
  heartbeatInterval?: number | null | undefined;
  /** A ping unanswered this long means the socket is dead. */
  heartbeatTimeout?: number | undefined;
  /** Renew the connection after this long, before API Gateway's 2-hour limit; null: never. */
  maxConnectionAge?: number | null | undefined;
  /** How long one handshake may take; null waits as long as the platform does. */
  openTimeout?: number | null | undefined;
  /** Default bound of `request()` and `submit()`; null (default) waits as long as it takes. */
  requestTimeout?: number | null | undefined;
  /** While disconnected, queue new requests (default) or fail them at once. */
  queueWhileDisconnected?: boolean | undefined;
  /** How many requests may wait for a socket. */
  maxQueued?: number | undefined;
  /** Resend a request whose answer was lost instead of failing it with `OutcomeUnknownError`. */
  resendUnanswered?: boolean | undefined;
  /** Events a subscription buffers for a slow consumer before dropping the oldest. */
  maxBufferedEvents?: number | undefined;
  logger?: Logger | undefined;
}

/** Options of `request()`. */
export interface RequestOptions {
  /** Receives each progress update of an asynchronous action in `seq` order; awaited if async. */
  onProgress?: ((update: ProgressFrame) => unknown) | undefined;
  /** Aborting stops waiting (the job goes on on the server) and rejects with the signal's reason. */
  signal?: AbortSignal | undefined;
  /** Bound on the whole exchange in ms; `undefined` takes the client's, `null` waits forever. */
  timeout?: number | null | undefined;
  /** Free annotations sent with the frame, for example a trace id. */
  metadata?: { [key: string]: string } | undefined;
  /** The request id (also the idempotency key of asynchronous actions); a ULID by default. */
  requestId?: string | undefined;
}

/** Options of `submit()`. */
export type SubmitOptions = Omit<RequestOptions, "onProgress">;

/** Options of `subscribe()`. */
export interface SubscribeOptions {
  /** Aborting stops waiting for the server's confirmation and gives the topic back. */
  signal?: AbortSignal | undefined;
}

/** Events of `client.on()`. */
export interface ClientEvents {
  /** Every change of the connection's state. */
  state: (state: ConnectionState) => void;
  /** Every well-formed frame from the server, before the client acts on it. */
  frame: (frame: ServerFrame) => void;
}

type FrameListener = ClientEvents["frame"];

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Client for a Streamer WebSocket API.
 *
 * ```ts
 * const client = new StreamerClient(url, { token: () => getToken() });
 * const result = await client.request("echo", { text: "hi" });
 * ```
 *
 * The connection opens with the first call (or `connect()`, which reports a wrong URL or token
 * at once) and heals itself until `close()`.
 */
export class StreamerClient {
  readonly url: string;
  private readonly link: Link;
  private readonly observer: StateObserver;
  private readonly logger: Logger;
  private readonly calls = new CallTable();
  private readonly jobs = new Map<string, Job>();
  private readonly topics = new TopicRegistry();
  private readonly frameListeners = new Set<FrameListener>();
  private readonly stop = new AbortController();
  private readonly backoff: BackoffOptions;
  private readonly requestTimeout: number | null;
  private readonly queueWhileDisconnected: boolean;
  private readonly maxQueued: number;
  private readonly resendUnanswered: boolean;
  private readonly maxBufferedEvents: number;
  private readonly jobOwner: JobOwner;
  private opening: Promise<void> | null = null;
  private closing = false;
  private failure: ConnectionFailedError | null = null;
  // Jobs the server said something about since the last heartbeat; the others are polled.
  private readonly heard = new Set<string>();
  private readonly recentEvents = new Map<string, true>();

  constructor(url: string, options: StreamerClientOptions = {}) {
    const WebSocketClass =
      options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (WebSocketClass === undefined) {
      throw new TypeError(
        "no WebSocket implementation: in Node 20 pass one, e.g. `new StreamerClient(url, { WebSocket })` " +
          "with `import { WebSocket } from \"ws\"`",
      );
    }
    this.url = url;
    this.logger = options.logger ?? defaultLogger;
    this.backoff = {
      initial: options.backoffInitial ?? 500,
      maximum: options.backoffMax ?? 30_000,
      factor: options.backoffFactor ?? 2,
    };
    this.requestTimeout = options.requestTimeout ?? null;
    this.queueWhileDisconnected = options.queueWhileDisconnected ?? true;
    this.maxQueued = options.maxQueued ?? DEFAULT_MAX_QUEUED;
    this.resendUnanswered = options.resendUnanswered ?? false;
    this.maxBufferedEvents = options.maxBufferedEvents ?? 1000;
    this.observer = new StateObserver(this.logger);
    this.jobOwner = {
      cancel: (job) => this.cancelJob(job),
      query: (job, wait) => this.queryJob(job, wait),
    };
    this.link = new Link(
      url,
      {
        WebSocket: WebSocketClass,
        token: options.token ?? null,
        tokenPlacement: options.tokenPlacement ?? "subprotocol",
        subprotocol: options.subprotocol ?? "streamer.v1",
        reconnect: options.reconnect ?? true,
        maxReconnectAttempts: options.maxReconnectAttempts ?? null,
        backoff: this.backoff,
        backoffResetAfter: options.backoffResetAfter ?? null,
        heartbeatInterval: options.heartbeatInterval === undefined ? DEFAULT_HEARTBEAT_INTERVAL : options.heartbeatInterval,
        heartbeatTimeout: options.heartbeatTimeout ?? 30_000,
        maxConnectionAge:
          options.maxConnectionAge === undefined ? DEFAULT_MAX_CONNECTION_AGE : options.maxConnectionAge,
        openTimeout: options.openTimeout === undefined ? 10_000 : options.openTimeout,
      },
      this.observer,
      {
        onOpen: () => this.restore(),
        onMessage: (data) => this.receive(data),
        onDown: () => this.connectionLost(),
        onClosed: (error) => this.gaveUp(error),
        heartbeat: () => this.heartbeat(),
        drain: (patience) => this.drain(patience),
      },
      this.logger,
    );
  }

  // ------------------------------------------------------------------ lifecycle

  /**
   * Open the connection; rejects at once if the first attempt fails (wrong URL, refused
   * token), and can then be called again. Calls made before it open the connection themselves.
   */
  connect(): Promise<void> {
    if (this.closing) return Promise.reject(new ClientClosedError("client is closed"));
    if (this.failure !== null) return Promise.reject(new ConnectionFailedError(this.failure.message));
    if (this.opening === null) {
      const opening = this.link.open();
      this.opening = opening;
      opening.catch(() => {
        // A failed first connection leaves nothing behind: the next call tries again.
        if (this.opening === opening) this.opening = null;
      });
    }
    return this.opening;
  }

  /** Close the connection; pending requests fail with `ClientClosedError`, subscriptions end. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.stop.abort();
    await this.link.close();
    this.failEverything(new ClientClosedError("client was closed"), true);
  }

  /** The connection's current state. */
  get state(): ConnectionState {
    return this.observer.state;
  }

  /** Whether the client can no longer be used (closed, or gave up reconnecting). */
  get closed(): boolean {
    return this.closing || this.failure !== null;
  }

  /** Listen to `"state"` changes or to every `"frame"`; returns a function that stops it. */
  on<E extends keyof ClientEvents>(event: E, listener: ClientEvents[E]): () => void {
    if (event === "state") return this.observer.add(listener as StateListener);
    if (event !== "frame") throw new TypeError(`unknown event ${JSON.stringify(event)}: "state" or "frame"`);
    this.frameListeners.add(listener as FrameListener);
    return () => {
      this.frameListeners.delete(listener as FrameListener);
    };
  }

  /** The current state, then every change, ending after `"closed"`. */
  states(): AsyncIterableIterator<ConnectionState> {
    return this.observer.watch();
  }

  // ------------------------------------------------------------------ requests

  /**
   * Run `action` and resolve with its result, whether the server answers at once or later.
   *
   * Remote failures reject with the `RemoteError` subclass of their code. A connection lost
   * after the request was written but before any answer rejects with `OutcomeUnknownError`,
   * since the server may have run it (unless the client was built with
   * `resendUnanswered: true`); once acknowledged, an asynchronous job survives any drop.
   */
  async request(action: string, payload: JsonObject = {}, options: RequestOptions = {}): Promise<JsonValue> {
    const timeout = options.timeout === undefined ? this.requestTimeout : options.timeout;
    const stopper = new Stopper(
      options.signal,
      timeout,
      () => new RequestTimeoutError(`${action}: no result after ${timeout} ms`),
    );
    let job: Job | null = null;
    try {
      stopper.check();
      await stopper.race(this.connect());
      const started = this.start(action, payload, options);
      job = started;
      const onProgress = options.onProgress;
      const work = (async (): Promise<JsonValue> => {
        if (onProgress !== undefined) {
          for await (const update of started.progress) await onProgress(update);
        }
        return await started.result;
      })();
      return await stopper.race(work);
    } finally {
      stopper.dispose();
      if (job !== null && !job.done()) {
        this.forget(job, new RequestTimeoutError(`${action}: caller stopped waiting`));
      }
    }
  }

  /**
   * Send `action` and resolve with its `Job` once the server has accepted it.
   *
   * Acceptance is an `acknowledgment` for asynchronous actions (the job then runs on the
   * server whatever happens to this connection), or the result itself for synchronous ones.
   * A refusal rejects here, and so does a connection lost before either arrived.
   */
  async submit(action: string, payload: JsonObject = {}, options: SubmitOptions = {}): Promise<Job> {
    const timeout = options.timeout === undefined ? this.requestTimeout : options.timeout;
    const stopper = new Stopper(
      options.signal,
      timeout,
      () => new RequestTimeoutError(`${action}: not accepted after ${timeout} ms`),
    );
    let job: Job | null = null;
    try {
      stopper.check();
      await stopper.race(this.connect());
      job = this.start(action, payload, options);
      const call = this.calls.get(job.id);
      if (call !== undefined) {
        await stopper.race(call.answer.promise);
      } else if (job.done()) {
        await job.result;
      }
      return job;
    } catch (error) {
      if (job !== null && !job.done()) {
        // Nobody will hold this job: stop tracking it rather than re-attach it forever.
        const reason = stopper.expired ? "not accepted in time" : "submit was abandoned";
        this.forget(job, new ClientClosedError(`${action}: ${reason}`));
      }
      throw error;
    } finally {
      stopper.dispose();
    }
  }

  /**
   * Subscribe to `topic`; resolves once the server confirmed. The subscription survives
   * reconnects; iterate it with `for await`, end it with `unsubscribe()` or by leaving the loop.
   */
  async subscribe(topic: string, options: SubscribeOptions = {}): Promise<Subscription> {
    const stopper = new Stopper(options.signal, null, () => new Error("unreachable"));
    try {
      stopper.check();
      await stopper.race(this.connect());
      this.ensureUsable();
      if (!TOPIC_PATTERN.test(topic)) {
        throw new InvalidRequestError(
          `invalid topic ${JSON.stringify(topic)}: must match ${TOPIC_PATTERN.source}`,
          "payload.topic",
        );
      }
      if (!this.link.connected && !this.queueWhileDisconnected) {
        throw new ConnectionFailedError("not connected to the server");
      }
      if (this.topics.get(topic) === undefined) this.checkQueueRoom();
      const subscription = new Subscription(
        topic,
        this.maxBufferedEvents,
        (leaving) => this.leave(leaving),
        this.logger,
      );
      const { entry, first } = this.topics.add(subscription);
      try {
        if (first) this.sendSubscribe(entry);
        await stopper.race(entry.confirmed.promise);
      } catch (error) {
        subscription.close(undefined, true);
        if (this.topics.remove(subscription) && !this.closed) {
          // The subscribe may already be on its way; without this the server would keep
          // sending the topic's events to a connection nobody listens on.
          this.spawn(this.unsubscribeTopic(topic));
        }
        throw error;
      }
      return subscription;
    } finally {
      stopper.dispose();
    }
  }

  // ------------------------------------------------------------------ driven by the link

  /**
   * Restore topics, re-attach accepted jobs and send what waits for a socket.
   *
   * Every frame sent here is marked `restore`: if the burst trips the server's rate limit,
   * the refused frames are sent again after a backoff instead of failing.
   */
  private restore(): void {
    this.dropTransientCalls();
    for (const entry of this.topics.all()) this.sendSubscribe(entry, true);
    for (const job of [...this.jobs.values()]) {
      if (!this.calls.has(job.id) && !job.done()) this.queryStatus(job, true);
    }
    for (const call of this.calls) {
      if (call.replay) {
        call.restore = true;
        this.transmit(call);
      }
    }
  }

  /** Parse and route one frame; a frame that does not parse is logged and skipped. */
  private receive(data: unknown): void {
    let frame: ServerFrame;
    try {
      if (typeof data !== "string" && !(data instanceof ArrayBuffer) && !ArrayBuffer.isView(data)) {
        throw new FrameError("frame is neither text nor binary data the client can read");
      }
      frame = parseServerFrame(data);
    } catch (error) {
      if (!(error instanceof FrameError)) throw error;
      this.logger.warn(`ignored a malformed frame from the server: ${error.message}`);
      return;
    }
    for (const listener of [...this.frameListeners]) {
      try {
        listener(frame);
      } catch (error) {
        this.logger.error("frame listener failed", error);
      }
    }
    this.dispatch(frame);
  }

  /**
   * Forget what belonged to the lost socket and fail calls whose outcome is unknown.
   *
   * Calls never written wait for the next socket. Calls written and unanswered are resent only
   * when that is safe (see `Call`); the others fail now, so that a synchronous action is never
   * run twice behind the caller's back.
   */
  private connectionLost(): void {
    this.dropTransientCalls();
    for (const call of this.calls) {
      if (!call.replay || !call.written || call.resendSafe) continue;
      const action = call.frame.action;
      const error = new OutcomeUnknownError(
        `${action}: outcome unknown: the connection dropped before the answer ` +
          "(the server may or may not have run it; resendUnanswered: true sends it again)",
        action,
        call.id,
      );
      const job = this.jobs.get(call.id);
      if (job !== undefined) this.forget(job, error);
      else this.calls.fail(call.id, error);
    }
  }

  /** The link gave up: everything still waiting fails with the reason. */
  private gaveUp(error: ConnectionFailedError): void {
    this.failure = error;
    this.logger.warn(`connection closed for good: ${error.message}`);
    this.failEverything(error, false);
  }

  /** Send `ping` and wait for `pong`; keeps idle connections open at the gateway. */
  private async heartbeat(): Promise<void> {
    const call = this.register({ action: "ping", id: newRequestId(), payload: {} }, { replay: false }, true);
    this.transmit(call);
    try {
      await call.answer.promise;
    } catch (error) {
      // Any answer, even a refusal such as RATE_LIMITED, proves the socket is alive.
      if (!(error instanceof RemoteError)) throw error;
      this.logger.debug(`ping answered with ${error.code}`);
    }
    this.pollQuietJobs();
  }

  /**
   * Ask `status` of accepted jobs the server has said nothing about for a heartbeat.
   *
   * A job's final frame can be lost (sent to a socket that was just replaced, or dropped on
   * the way); without asking, the caller would wait forever. A job that is heard from costs
   * nothing, and the answer ends the job at most once like any other final frame.
   */
  private pollQuietJobs(): void {
    const querying = new Set<string>();
    for (const call of this.calls) {
      if (call.frame.action === "status" && call.jobId !== null) querying.add(call.jobId);
    }
    for (const job of [...this.jobs.values()]) {
      const quiet = !this.heard.has(job.id) && !querying.has(job.id);
      if (quiet && !job.done() && !this.calls.has(job.id)) this.queryStatus(job);
    }
    this.heard.clear();
  }

  /** Wait for answers to requests written on the current socket, before renewing it. */
  private async drain(patience: number): Promise<void> {
    const pending = this.calls.inFlight(this.link.generation).map((call) => call.answer.promise);
    if (pending.length === 0) return;
    await withTimeout(Promise.allSettled(pending), patience, () => new Error("drain")).catch(() => undefined);
  }

  // ------------------------------------------------------------------ internals

  private ensureUsable(): void {
    if (this.closing) throw new ClientClosedError("client is closed");
    if (this.failure !== null) throw new ConnectionFailedError(this.failure.message);
  }

  private start(action: string, payload: JsonObject, options: SubmitOptions): Job {
    this.ensureUsable();
    const frame: ClientFrame = { action, id: options.requestId ?? newRequestId(), payload };
    if (options.metadata !== undefined && Object.keys(options.metadata).length > 0) {
      frame.metadata = options.metadata;
    }
    const text = this.encode(frame);
    if (this.jobs.has(frame.id)) throw new InvalidRequestError(`request id ${frame.id} is already pending`, "id");
    const call = this.register(frame, { replay: true, jobId: frame.id, resendSafe: this.resendUnanswered }, false, text);
    const job = new Job(frame.id, action, this.jobOwner);
    this.jobs.set(job.id, job);
    this.transmit(call);
    return job;
  }

  private encode(frame: ClientFrame): string {
    try {
      return encodeClientFrame(frame);
    } catch (error) {
      if (error instanceof FrameError) {
        throw new InvalidRequestError(`invalid request ${JSON.stringify(frame.action)}: ${error.message}`, error.field);
      }
      throw error;
    }
  }

  private register(frame: ClientFrame, options: CallOptions, internal: boolean, text?: string): Call {
    const encoded = text ?? this.encode(frame);
    if (!internal) this.checkQueueRoom();
    const call = new Call(frame, encoded, options);
    this.calls.add(call);
    return call;
  }

  /**
   * Refuse new work while disconnected when queueing is off or the queue is full.
   *
   * Topics waiting to be subscribed count too: the next socket carries them in the same burst
   * as the queued requests.
   */
  private checkQueueRoom(): void {
    if (this.link.connected) return;
    if (!this.queueWhileDisconnected) {
      throw new ConnectionFailedError("not connected to the server (queueing is disabled)");
    }
    const waiting = this.calls.waitingToSend() + this.topics.unconfirmed();
    if (waiting >= this.maxQueued) {
      throw new ConnectionFailedError(`not connected and ${waiting} requests already wait to be sent`);
    }
  }

  /** Write the call on the current socket unless it is already there or answered. */
  private transmit(call: Call): void {
    const generation = this.link.generation;
    if (!this.calls.holds(call) || call.sentGeneration === generation) return;
    // Marked before the write: if the socket drops while the frame is on its way, the call
    // must already count as written (its outcome is then unknown).
    const previous = call.sentGeneration;
    call.sentGeneration = generation;
    if (!this.link.send(call.text)) call.sentGeneration = previous;
  }

  private dropTransientCalls(): void {
    this.calls.dropTransient(this.link.connected, this.link.generation);
  }

  private sendSubscribe(entry: TopicEntry, restore = false): void {
    const frame: ClientFrame = { action: "subscribe", id: newRequestId(), payload: { topic: entry.topic } };
    const call = this.register(frame, { replay: false, restore }, true);
    call.answer.promise.then(
      () => entry.confirm(),
      (error: unknown) => {
        if (error instanceof CallDropped) return;
        if (this.topics.get(entry.topic) === entry) {
          this.logger.warn(`subscription to "${entry.topic}" refused: ${messageOf(error)}`);
          this.topics.fail(entry.topic, error);
        }
      },
    );
    this.transmit(call);
  }

  private async leave(subscription: Subscription): Promise<void> {
    subscription.close(undefined, true);
    if (this.topics.remove(subscription)) await this.unsubscribeTopic(subscription.topic);
  }

  private async unsubscribeTopic(topic: string): Promise<void> {
    // A subscriber that came back for the topic meanwhile needs the server's subscription.
    if (this.closed || !this.link.connected || this.topics.get(topic) !== undefined) return;
    const frame: ClientFrame = { action: "unsubscribe", id: newRequestId(), payload: { topic } };
    const call = this.register(frame, { replay: false }, true);
    try {
      this.transmit(call);
      await withTimeout(call.answer.promise, UNSUBSCRIBE_WAIT, () => new Error("no answer"));
    } catch (error) {
      // Leaving must not fail: the server drops the subscription with the connection anyway.
      this.logger.debug(`unsubscribe from "${topic}" not confirmed: ${messageOf(error)}`);
    } finally {
      this.calls.pop(call.id);
    }
  }

  private queryStatus(job: Job, restore = false): void {
    const frame: ClientFrame = { action: "status", id: newRequestId(), payload: { request_id: job.id } };
    const call = this.register(
      frame,
      { replay: false, jobId: job.id, retryCodes: STATUS_RETRY_CODES, restore },
      true,
    );
    this.transmit(call);
  }

  private async cancelJob(job: Job): Promise<RequestStatus> {
    this.ensureUsable();
    const frame: ClientFrame = { action: "cancel", id: newRequestId(), payload: { request_id: job.id } };
    // Cancelling twice is harmless, so an unanswered cancel is always sent again.
    const call = this.register(frame, { replay: true, jobId: job.id, resendSafe: true }, false);
    this.transmit(call);
    const answer = await call.answer.promise;
    return answer.type === "status" ? answer.snapshot.status : job.lastStatus;
  }

  private async queryJob(job: Job, options: WaitOptions): Promise<RequestSnapshot> {
    this.ensureUsable();
    const timeout = options.timeout ?? null;
    const stopper = new Stopper(
      options.signal,
      timeout,
      () => new RequestTimeoutError(`status of job ${job.id}: no answer after ${timeout} ms`),
    );
    stopper.check();
    const frame: ClientFrame = { action: "status", id: newRequestId(), payload: { request_id: job.id } };
    // Reading a status is harmless to repeat, so it outlives a drop and is sent again. No
    // `jobId`: a refusal of this query answers the caller and does not end the job.
    const call = this.register(frame, { replay: true, resendSafe: true }, false);
    this.transmit(call);
    try {
      const answer = await stopper.race(call.answer.promise);
      if (answer.type !== "status") {
        throw new StreamerError(`status of job ${job.id}: unexpected ${answer.type} frame`, "INTERNAL_ERROR");
      }
      return answer.snapshot;
    } finally {
      stopper.dispose();
      if (this.calls.holds(call)) this.calls.pop(call.id);
    }
  }

  private spawn(work: Promise<void>): void {
    work.catch((error: unknown) => {
      if (!(error instanceof Interrupted)) this.logger.error("background task failed", error);
    });
  }

  /** Stop tracking a job nobody waits for, so it is not re-attached forever. */
  private forget(job: Job, error: unknown): void {
    this.untrack(job.id);
    this.calls.fail(job.id, error);
    job.fail(error);
  }

  private untrack(jobId: string): Job | undefined {
    this.heard.delete(jobId);
    const job = this.jobs.get(jobId);
    this.jobs.delete(jobId);
    return job;
  }

  private failEverything(error: StreamerError, quietly: boolean): void {
    this.calls.failAll(error);
    for (const job of this.jobs.values()) job.fail(error);
    this.jobs.clear();
    this.heard.clear();
    this.topics.closeAll(error, quietly);
  }

  private dispatch(frame: ServerFrame): void {
    switch (frame.type) {
      case "event":
        if (this.seenEvent(frame)) {
          this.logger.debug(`dropped event ${frame.id} on "${frame.topic}" delivered twice`);
        } else if (!this.topics.deliver(frame)) {
          this.logger.debug(`event for topic "${frame.topic}" without subscriber`);
        }
        return;
      case "error":
        this.onError(frame);
        return;
      case "progress": {
        const job = this.jobs.get(frame.request_id);
        if (job === undefined) {
          this.logger.debug(`progress for unknown request ${frame.request_id}`);
          return;
        }
        this.heard.add(job.id);
        // Progress proves the server has the request, even if its acknowledgment is late.
        this.calls.resolve(frame.request_id, frame);
        job.deliverProgress(frame);
        return;
      }
      case "acknowledgment": {
        this.calls.resolve(frame.request_id, frame);
        const job = this.jobs.get(frame.request_id);
        if (job !== undefined) {
          this.heard.add(job.id);
          job.acknowledge(frame.status);
          // A resent id whose work already ended: fetch how it ended.
          if (TERMINAL_STATUSES.has(frame.status)) this.queryStatus(job);
        }
        return;
      }
      case "response":
      case "complete": {
        this.calls.resolve(frame.request_id, frame);
        this.untrack(frame.request_id)?.resolve(frame.result);
        return;
      }
      case "status": {
        this.calls.resolve(frame.request_id, frame);
        const job = this.jobs.get(frame.snapshot.request_id);
        if (job !== undefined) {
          this.heard.add(job.id);
          job.applySnapshot(frame.snapshot);
          if (job.done()) {
            this.untrack(job.id);
            // A submit still waiting for its acknowledgment learns the job is over.
            this.calls.resolve(job.id, frame);
          }
        }
        return;
      }
      case "pong":
      case "subscribed":
      case "unsubscribed":
        this.calls.resolve(frame.request_id, frame);
        return;
    }
  }

  /** Whether this event was already delivered (event ids are unique per event). */
  private seenEvent(frame: EventFrame): boolean {
    const key = `${frame.topic}\u0000${frame.id}`;
    if (this.recentEvents.has(key)) {
      this.recentEvents.delete(key);
      this.recentEvents.set(key, true);
      return true;
    }
    this.recentEvents.set(key, true);
    if (this.recentEvents.size > RECENT_EVENTS) {
      const oldest = this.recentEvents.keys().next();
      if (!oldest.done) this.recentEvents.delete(oldest.value);
    }
    return false;
  }

  private onError(frame: ErrorFrame): void {
    const error = remoteError(frame.code, frame.message, frame.details, frame.request_id);
    if (frame.request_id === null) {
      this.logger.warn(`server reported an error: ${frame.code}: ${frame.message}`);
      return;
    }
    const call = this.calls.get(frame.request_id);
    if (call !== undefined && this.retryLater(call, error)) return;
    this.calls.fail(frame.request_id, error);
    if (call !== undefined && call.frame.action === "status" && call.jobId !== null) {
      const job = this.untrack(call.jobId);
      if (job !== undefined) {
        // The server cannot say how the job ends; waiting for it would hang forever.
        this.logger.warn(`status of job ${job.id} not available: ${frame.code}: ${frame.message}`);
        job.fail(error);
      }
      return;
    }
    const job = this.untrack(frame.request_id);
    if (job !== undefined) job.fail(error);
    else if (call === undefined) this.logger.debug(`error for unknown request ${frame.request_id}: ${frame.message}`);
  }

  /**
   * Send a refused call again after a backoff when the refusal is transient for it.
   *
   * The count lives on the call, so each query or restore gets its own retries, however many
   * a long job needed before.
   */
  private retryLater(call: Call, error: RemoteError): boolean {
    const transient =
      call.retryCodes.has(error.code) || (call.restore && RESTORE_RETRY_CODES.has(error.code));
    if (!transient || call.attempts >= RETRY_LIMIT || this.closed) return false;
    call.attempts += 1;
    // The server refused the frame without acting on it: it waits for a socket again.
    call.sentGeneration = 0;
    const delay = retryDelay(call.attempts, this.backoff);
    this.logger.warn(
      `${call.frame.action} ${call.id} refused (${error.code}: ${error.message}); trying again in ${Math.round(delay)} ms`,
    );
    this.spawn(this.retry(call, delay));
    return true;
  }

  private async retry(call: Call, delay: number): Promise<void> {
    await sleep(delay, this.stop.signal);
    // Answered, dropped with its socket, or already resent by a reconnect in the meantime.
    if (this.calls.holds(call) && !call.written) this.transmit(call);
  }
}
