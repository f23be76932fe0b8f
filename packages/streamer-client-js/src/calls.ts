/**
 * Client frames waiting for their answer, keyed by frame id.
 *
 * The server answers every client frame with a frame carrying its id, so one table routes
 * every answer back to whoever waits for it, and tells the client what to send again on a new
 * socket.
 */

import { Deferred } from "./async.js";
import type { ClientFrame, ErrorCode, ServerFrame } from "./frames.js";

/** A call that only made sense on a socket that is gone; its waiters treat it as cancelled. */
export class CallDropped extends Error {
  constructor() {
    super("the socket this frame belonged to is gone");
    this.name = "CallDropped";
  }
}

export interface CallOptions {
  readonly replay: boolean;
  readonly jobId?: string | null;
  readonly resendSafe?: boolean;
  readonly restore?: boolean;
  readonly retryCodes?: ReadonlySet<ErrorCode>;
}

/**
 * A client frame waiting for its answer.
 *
 * `replay` calls (user actions, cancel) outlive the socket they were written on; the others
 * (ping, status, subscribe, unsubscribe) belong to one socket and are recreated by the client
 * as needed. A replay call that was never written is simply sent on the next socket. One that
 * was written and not answered has an unknown outcome: it is sent again only when
 * `resendSafe` says the server cannot run it twice (`cancel` is idempotent; the server
 * de-duplicates asynchronous actions by id but not synchronous ones, and before an answer the
 * client cannot tell which kind an action is).
 *
 * `retryCodes` are refusals worth asking again after a backoff, counted in `attempts`;
 * `restore` marks frames sent to rebuild state on a new socket, for which a rate limit is
 * always such a refusal: the server checks the rate before it reads the frame, so a refused
 * frame was never acted on.
 */
export class Call {
  readonly answer = new Deferred<ServerFrame>();
  readonly replay: boolean;
  readonly jobId: string | null;
  readonly resendSafe: boolean;
  readonly retryCodes: ReadonlySet<ErrorCode>;
  restore: boolean;
  sentGeneration = 0;
  attempts = 0;

  constructor(
    readonly frame: ClientFrame,
    readonly text: string,
    options: CallOptions,
  ) {
    this.replay = options.replay;
    this.jobId = options.jobId ?? null;
    this.resendSafe = options.resendSafe ?? false;
    this.restore = options.restore ?? false;
    this.retryCodes = options.retryCodes ?? new Set();
  }

  get id(): string {
    return this.frame.id;
  }

  /** Whether the frame may have reached the server since it was last known not to. */
  get written(): boolean {
    return this.sentGeneration !== 0;
  }
}

/** Pending calls in the order they were made, which is also the order they are resent. */
export class CallTable implements Iterable<Call> {
  private readonly calls = new Map<string, Call>();

  get size(): number {
    return this.calls.size;
  }

  [Symbol.iterator](): Iterator<Call> {
    return [...this.calls.values()][Symbol.iterator]();
  }

  has(requestId: string): boolean {
    return this.calls.has(requestId);
  }

  get(requestId: string): Call | undefined {
    return this.calls.get(requestId);
  }

  add(call: Call): void {
    this.calls.set(call.id, call);
  }

  /** Whether `call` itself (not an older call with its id) still waits. */
  holds(call: Call): boolean {
    return this.calls.get(call.id) === call;
  }

  /** Calls a new socket would have to carry: the bound of the offline queue. */
  waitingToSend(): number {
    let count = 0;
    for (const call of this.calls.values()) if (call.replay) count += 1;
    return count;
  }

  /** Replay calls written on socket `generation` and not answered yet. */
  inFlight(generation: number): Call[] {
    return [...this.calls.values()].filter((call) => call.replay && call.sentGeneration === generation);
  }

  pop(requestId: string): Call | undefined {
    const call = this.calls.get(requestId);
    this.calls.delete(requestId);
    return call;
  }

  resolve(requestId: string, frame: ServerFrame): Call | undefined {
    const call = this.pop(requestId);
    call?.answer.resolve(frame);
    return call;
  }

  fail(requestId: string, error: unknown): Call | undefined {
    const call = this.pop(requestId);
    call?.answer.reject(error);
    return call;
  }

  /** Drop the calls that only made sense on a socket that is gone (or never had them). */
  dropTransient(connected: boolean, generation: number): void {
    for (const call of [...this.calls.values()]) {
      if (!call.replay && (!connected || call.sentGeneration !== generation)) {
        this.calls.delete(call.id);
        call.answer.reject(new CallDropped());
      }
    }
  }

  failAll(error: unknown): void {
    const calls = [...this.calls.values()];
    this.calls.clear();
    for (const call of calls) call.answer.reject(error);
  }
}
