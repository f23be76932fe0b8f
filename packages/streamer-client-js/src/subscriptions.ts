/**
 * Topic subscriptions: what the client must remember to restore them after a reconnect.
 *
 * Several parts of one application may subscribe to the same topic; the server sees a single
 * subscription per topic and the client fans events out locally, so one part unsubscribing
 * never silences another.
 */

import { Channel, Deferred } from "./async.js";
import type { EventFrame } from "./frames.js";
import type { Logger } from "./logger.js";

/**
 * Events of one topic, in arrival order; iterate it with `for await`.
 *
 * Leaving the loop (`break`, `return`, an exception) unsubscribes, as leaving the Python
 * client's `async with` block does; so does `unsubscribe()`. The buffer is bounded: a
 * consumer that falls far behind loses the oldest events (counted in `dropped`, with a
 * warning) rather than growing memory without limit.
 */
export class Subscription implements AsyncIterableIterator<EventFrame> {
  /** Events dropped because the consumer fell `maxBufferedEvents` behind. */
  dropped = 0;
  private readonly channel = new Channel<EventFrame>();
  private leaving: Promise<void> | null = null;

  constructor(
    readonly topic: string,
    private readonly maxBuffered: number,
    private readonly leave: (subscription: Subscription) => Promise<void>,
    private readonly logger: Logger,
  ) {}

  /** Whether the subscription has ended (unsubscribed, refused, or the client closed). */
  get closed(): boolean {
    return this.channel.closed;
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<EventFrame> {
    return this;
  }

  next(): Promise<IteratorResult<EventFrame>> {
    return this.channel.next();
  }

  async return(): Promise<IteratorResult<EventFrame>> {
    await this.unsubscribe();
    return { value: undefined, done: true };
  }

  /**
   * Stop receiving the topic. Resolves once the server confirmed (or could not be asked:
   * leaving never fails); events already buffered are dropped.
   */
  unsubscribe(): Promise<void> {
    this.leaving ??= this.leave(this);
    return this.leaving;
  }

  /** @internal */
  deliver(event: EventFrame): void {
    if (this.channel.closed) return;
    if (this.channel.size >= this.maxBuffered) {
      this.channel.shift();
      this.dropped += 1;
      this.logger.warn(`subscription to "${this.topic}" is ${this.maxBuffered} events behind; dropped the oldest`);
    }
    this.channel.push(event);
  }

  /** End the iteration: quietly, or with `error` for the consumer to catch. @internal */
  close(error?: unknown, discard = false): void {
    if (discard) this.channel.discard();
    else this.channel.end(error);
  }
}

/** One topic as the server knows it, shared by every local subscriber. */
export class TopicEntry {
  readonly confirmed = new Deferred<void>();
  readonly subscribers: Subscription[] = [];

  constructor(readonly topic: string) {}

  confirm(): void {
    this.confirmed.resolve();
  }
}

/** Topics with at least one local subscriber, in subscription order. */
export class TopicRegistry {
  private readonly entries = new Map<string, TopicEntry>();

  all(): TopicEntry[] {
    return [...this.entries.values()];
  }

  get(topic: string): TopicEntry | undefined {
    return this.entries.get(topic);
  }

  /** Topics whose subscribe the server has not confirmed: frames a new socket must carry. */
  unconfirmed(): number {
    let count = 0;
    for (const entry of this.entries.values()) if (!entry.confirmed.settled) count += 1;
    return count;
  }

  /** Attach a subscriber; `first` when the server must be told about the topic. */
  add(subscription: Subscription): { entry: TopicEntry; first: boolean } {
    let entry = this.entries.get(subscription.topic);
    const first = entry === undefined;
    if (entry === undefined) {
      entry = new TopicEntry(subscription.topic);
      this.entries.set(subscription.topic, entry);
    }
    entry.subscribers.push(subscription);
    return { entry, first };
  }

  /** Detach a subscriber; true when it was the topic's last one. */
  remove(subscription: Subscription): boolean {
    const entry = this.entries.get(subscription.topic);
    if (entry === undefined) return false;
    const index = entry.subscribers.indexOf(subscription);
    if (index < 0) return false;
    entry.subscribers.splice(index, 1);
    if (entry.subscribers.length > 0) return false;
    this.entries.delete(subscription.topic);
    return true;
  }

  deliver(event: EventFrame): boolean {
    const entry = this.entries.get(event.topic);
    if (entry === undefined) return false;
    for (const subscription of entry.subscribers) subscription.deliver(event);
    return true;
  }

  /** The server refused the topic: end its subscribers with that error. */
  fail(topic: string, error: unknown): void {
    const entry = this.entries.get(topic);
    if (entry === undefined) return;
    this.entries.delete(topic);
    entry.confirmed.reject(error);
    for (const subscription of entry.subscribers) subscription.close(error);
  }

  /** End every subscription; `quietly` ends iteration instead of raising `error`. */
  closeAll(error: unknown, quietly: boolean): void {
    for (const entry of this.entries.values()) {
      entry.confirmed.reject(error);
      for (const subscription of entry.subscribers) subscription.close(quietly ? undefined : error);
    }
    this.entries.clear();
  }
}
