/**
 * Promise plumbing shared by the client: settle-later promises, abortable sleeps and a queue
 * that an async iterator reads.
 *
 * Many promises here are settled by the client while nobody may be awaiting them (a job
 * submitted and never awaited, a subscribe nobody waits for). A rejected promise without a
 * handler ends a Node process, so every such promise is marked handled at creation; whoever
 * does await it still receives the rejection.
 */

const ignore = (): void => {};

/** A promise with its resolve and reject exposed, and whether it has settled. */
export class Deferred<T> {
  readonly promise: Promise<T>;
  settled = false;
  private resolveFn!: (value: T) => void;
  private rejectFn!: (reason: unknown) => void;

  constructor() {
    this.promise = new Promise<T>((resolve, reject) => {
      this.resolveFn = resolve;
      this.rejectFn = reject;
    });
    this.promise.catch(ignore);
  }

  resolve(value: T): void {
    if (this.settled) return;
    this.settled = true;
    this.resolveFn(value);
  }

  reject(reason: unknown): void {
    if (this.settled) return;
    this.settled = true;
    this.rejectFn(reason);
  }
}

/** Raised inside the client when a wait is cut short because the client is closing. */
export class Interrupted extends Error {
  constructor() {
    super("interrupted");
    this.name = "Interrupted";
  }
}

/** Resolve after `ms`, or reject with `Interrupted` as soon as `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(new Interrupted());
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(new Interrupted());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, Math.max(0, ms));
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Settle with `work`, or reject with `onTimeout()` if it takes longer than `ms`. */
export function withTimeout<T>(work: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(onTimeout()), Math.max(0, ms));
    work.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/**
 * What ends a caller's wait: its `AbortSignal`, its timeout, or neither.
 *
 * `race` rejects with the signal's own reason (the platform's `AbortError` unless the caller
 * gave one), the way `fetch` does, or with the error `onTimeout` makes.
 */
export class Stopper {
  private readonly deferred = new Deferred<never>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly signal: AbortSignal | undefined;
  private readonly onAbort = (): void => this.deferred.reject(this.signal?.reason);
  expired = false;

  constructor(signal: AbortSignal | undefined, timeoutMs: number | null, onTimeout: () => Error) {
    this.signal = signal;
    if (signal?.aborted) {
      this.deferred.reject(signal.reason);
    } else {
      signal?.addEventListener("abort", this.onAbort, { once: true });
    }
    if (timeoutMs !== null) {
      this.timer = setTimeout(() => {
        this.expired = true;
        this.deferred.reject(onTimeout());
      }, Math.max(0, timeoutMs));
    }
  }

  /** Throw now if the wait was already stopped (before any work starts). */
  check(): void {
    if (this.signal?.aborted) throw this.signal.reason;
  }

  race<T>(work: Promise<T>): Promise<T> {
    work.catch(ignore);
    return Promise.race([work, this.deferred.promise]);
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.signal?.removeEventListener("abort", this.onAbort);
  }
}

type Pending<T> = { resolve: (result: IteratorResult<T>) => void; reject: (error: unknown) => void };

/**
 * An unbounded first-in, first-out queue read by one async iterator.
 *
 * `end()` lets the reader drain what is buffered and then finish, or fail with `error` if
 * one is given, like the Python client's queue with its end marker.
 */
export class Channel<T> {
  private readonly items: T[] = [];
  private readonly waiting: Pending<T>[] = [];
  private ended = false;
  private error: unknown = undefined;
  private failed = false;

  get size(): number {
    return this.items.length;
  }

  get closed(): boolean {
    return this.ended;
  }

  push(item: T): void {
    if (this.ended) return;
    const reader = this.waiting.shift();
    if (reader !== undefined) {
      reader.resolve({ value: item, done: false });
    } else {
      this.items.push(item);
    }
  }

  /** Drop and return the oldest buffered item, for bounded buffers. */
  shift(): T | undefined {
    return this.items.shift();
  }

  end(error?: unknown): void {
    if (this.ended) return;
    this.ended = true;
    if (error !== undefined) {
      this.failed = true;
      this.error = error;
    }
    for (const reader of this.waiting.splice(0)) {
      if (this.failed) reader.reject(this.error);
      else reader.resolve({ value: undefined, done: true });
    }
  }

  /** End at once, dropping whatever is still buffered. */
  discard(): void {
    this.items.length = 0;
    this.end();
  }

  next(): Promise<IteratorResult<T>> {
    if (this.items.length > 0) {
      return Promise.resolve({ value: this.items.shift() as T, done: false });
    }
    if (this.ended) {
      return this.failed ? Promise.reject(this.error) : Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }
}
