/**
 * The handle of one piece of work running on the server.
 *
 * Progress is a "latest state" stream: the server numbers progress frames per request with
 * `seq` and may coalesce them, so a frame whose `seq` is not above the last one delivered is
 * stale or a duplicate (a resend, a replay after reconnect) and is dropped. Callers therefore
 * always see progress in order and each update once, however the frames travelled.
 */

import { Channel, Deferred, Stopper } from "./async.js";
import {
  RequestTimeoutError,
  StreamerError,
  remoteError,
} from "./errors.js";
import {
  TERMINAL_STATUSES,
  type JsonValue,
  type ProgressFrame,
  type RequestSnapshot,
  type RequestStatus,
} from "./frames.js";

// Enough history for a consumer that starts iterating late to see how the job got where it is.
const BACKLOG = 1000;

/** How a job reaches the client that owns it. */
export interface JobOwner {
  cancel(job: Job): Promise<RequestStatus>;
  query(job: Job, options: WaitOptions): Promise<RequestSnapshot>;
}

/** Bounds on a wait: an `AbortSignal`, a timeout in milliseconds, or both. */
export interface WaitOptions {
  readonly signal?: AbortSignal | undefined;
  readonly timeout?: number | null | undefined;
}

/** Work accepted by the server: follow its progress, await its result, or cancel it. */
export class Job {
  /**
   * The final result; rejects with the typed error when the job failed or was cancelled.
   *
   * Awaiting it with no bound is fine: a job whose final frame was lost is recovered by the
   * client's `status` polling. Use `wait()` to stop waiting early without cancelling the job.
   */
  readonly result: Promise<JsonValue>;
  /**
   * Progress updates in `seq` order, those already received first; iteration ends with the
   * job, quietly even when it failed (`result` is where the error is raised). Each
   * `for await` gets every update from the start.
   */
  readonly progress: AsyncIterable<ProgressFrame>;

  private currentStatus: RequestStatus = "QUEUED";
  private readonly outcome = new Deferred<JsonValue>();
  private lastSeq = 0;
  private readonly backlog: ProgressFrame[] = [];
  private readonly listeners = new Set<Channel<ProgressFrame>>();

  constructor(
    readonly id: string,
    readonly action: string,
    private readonly owner: JobOwner,
  ) {
    this.result = this.outcome.promise;
    this.progress = { [Symbol.asyncIterator]: () => this.follow() };
  }

  /** The last status the server reported (or the client inferred from a final frame). */
  get lastStatus(): RequestStatus {
    return this.currentStatus;
  }

  /** The newest progress update, for callers that poll rather than iterate. */
  get latestProgress(): ProgressFrame | null {
    return this.backlog[this.backlog.length - 1] ?? null;
  }

  /** Whether the job reached a final state (result, error or cancellation). */
  done(): boolean {
    return this.outcome.settled;
  }

  /**
   * Wait for the result with a bound; stopping early leaves the job running, and it can be
   * awaited again.
   */
  async wait(options: WaitOptions = {}): Promise<JsonValue> {
    const timeout = options.timeout ?? null;
    const stopper = new Stopper(
      options.signal,
      timeout,
      () => new RequestTimeoutError(`job ${this.id} (${this.action}) not finished after ${timeout} ms`),
    );
    try {
      stopper.check();
      return await stopper.race(this.result);
    } finally {
      stopper.dispose();
    }
  }

  /**
   * Ask the server to cancel; resolves with the status it reported.
   *
   * A queued job is cancelled at once; a running one stops at its next progress report, and
   * `result` then rejects with `RequestCancelledError`.
   */
  async cancel(): Promise<RequestStatus> {
    if (this.done()) return this.currentStatus;
    return this.owner.cancel(this);
  }

  /**
   * Ask the server for the stored state of the job; what it reports is applied to the job
   * (missed progress delivered, a missed result settled) before this resolves.
   */
  status(options: WaitOptions = {}): Promise<RequestSnapshot> {
    return this.owner.query(this, options);
  }

  toString(): string {
    return `Job(${this.action} id=${this.id} status=${this.currentStatus})`;
  }

  private follow(): AsyncIterator<ProgressFrame> {
    const channel = new Channel<ProgressFrame>();
    for (const frame of this.backlog) channel.push(frame);
    if (this.done()) channel.end();
    else this.listeners.add(channel);
    return {
      next: () => channel.next(),
      return: () => {
        this.listeners.delete(channel);
        channel.discard();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }

  // The methods below are driven by the client as frames arrive.

  /** @internal */
  acknowledge(status: RequestStatus): void {
    if (!this.done() && !TERMINAL_STATUSES.has(status)) this.currentStatus = status;
  }

  /** @internal */
  deliverProgress(frame: ProgressFrame): boolean {
    if (this.done() || frame.seq <= this.lastSeq) return false;
    this.lastSeq = frame.seq;
    this.currentStatus = "PROCESSING";
    this.backlog.push(frame);
    if (this.backlog.length > BACKLOG) this.backlog.shift();
    for (const listener of this.listeners) listener.push(frame);
    return true;
  }

  /** @internal */
  resolve(result: JsonValue): void {
    if (this.done()) return;
    this.currentStatus = "COMPLETED";
    this.outcome.resolve(result);
    this.endListeners();
  }

  /** @internal */
  fail(error: unknown): void {
    if (this.done()) return;
    if (error instanceof StreamerError && error.code === "CANCELLED") {
      this.currentStatus = "CANCELLED";
    } else if (!(error instanceof RequestTimeoutError)) {
      this.currentStatus = "FAILED";
    }
    this.outcome.reject(error);
    this.endListeners();
  }

  /** Catch up with the server after missed frames, without repeating what was delivered. @internal */
  applySnapshot(snapshot: RequestSnapshot): void {
    if (this.done()) return;
    const progress = snapshot.progress;
    if (progress !== null && progress.seq > this.lastSeq) {
      this.deliverProgress({
        type: "progress",
        request_id: this.id,
        percentage: progress.percentage,
        message: progress.message,
        metadata: progress.metadata,
        seq: progress.seq,
      });
    }
    if (snapshot.status === "COMPLETED") {
      this.resolve(snapshot.result);
    } else if (snapshot.status === "FAILED" || snapshot.status === "CANCELLED") {
      const info = snapshot.error;
      let error;
      if (info !== null) {
        error = remoteError(info.code, info.message, info.details, this.id);
      } else if (snapshot.status === "CANCELLED") {
        error = remoteError("CANCELLED", "request was cancelled", {}, this.id);
      } else {
        error = remoteError("INTERNAL_ERROR", "request failed", {}, this.id);
      }
      this.fail(error);
      this.currentStatus = snapshot.status;
    } else {
      this.currentStatus = snapshot.status;
    }
  }

  private endListeners(): void {
    for (const listener of this.listeners) listener.end();
    this.listeners.clear();
  }
}
