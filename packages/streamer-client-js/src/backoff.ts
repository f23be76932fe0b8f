/**
 * Reconnect delays: exponential growth with "equal jitter".
 *
 * Half of each delay is random so that many clients dropped by the same outage do not come
 * back in lockstep, and the other half is kept so that no attempt follows another instantly.
 * The same shape as the Python client's, in milliseconds.
 */

export interface BackoffOptions {
  readonly initial: number;
  readonly maximum: number;
  readonly factor: number;
}

/** The jittered delay before retry `attempt` (1-based). */
export function retryDelay(attempt: number, { initial, maximum, factor }: BackoffOptions): number {
  const delay = Math.min(maximum, initial * factor ** Math.max(0, attempt - 1));
  const half = delay / 2;
  return half + Math.random() * half;
}

/** Reconnect attempts and their growing delays since the last socket that stayed up. */
export class Backoff {
  attempts = 0;
  private step = 0;

  constructor(
    private readonly options: BackoffOptions,
    private readonly maxAttempts: number | null,
  ) {}

  reset(): void {
    this.attempts = 0;
    this.step = 0;
  }

  nextDelay(): number {
    this.step += 1;
    return retryDelay(this.step, this.options);
  }

  exhausted(): boolean {
    return this.maxAttempts !== null && this.attempts >= this.maxAttempts;
  }
}
