/**
 * Connection states, observable by listener or by async iteration.
 *
 * Applications show "reconnecting..." banners or pause producers while the link is down; they
 * need the transitions, not just a boolean, and they need them without polling.
 */

import { Channel } from "./async.js";
import type { Logger } from "./logger.js";

/** Where the client's link to the server stands. */
export type ConnectionState = "idle" | "connecting" | "connected" | "reconnecting" | "closed";

export type StateListener = (state: ConnectionState) => void;

/** Holds the current state and fans each change out to listeners and iterators. */
export class StateObserver {
  private current: ConnectionState = "idle";
  private readonly listeners = new Set<StateListener>();
  private readonly watchers = new Set<Channel<ConnectionState>>();

  constructor(private readonly logger: Logger) {}

  get state(): ConnectionState {
    return this.current;
  }

  /** Record a transition; repeated states are not news and are not announced again. */
  set(state: ConnectionState): void {
    if (state === this.current) return;
    this.current = state;
    for (const listener of [...this.listeners]) {
      try {
        listener(state);
      } catch (error) {
        // An observer's bug must not break the connection it observes.
        this.logger.error("connection state listener failed", error);
      }
    }
    for (const watcher of this.watchers) {
      watcher.push(state);
      if (state === "closed") watcher.end();
    }
    if (state === "closed") this.watchers.clear();
  }

  add(listener: StateListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** The current state, then every change, ending after `closed`. */
  watch(): AsyncIterableIterator<ConnectionState> {
    const channel = new Channel<ConnectionState>();
    channel.push(this.current);
    if (this.current === "closed") {
      channel.end();
    } else {
      this.watchers.add(channel);
    }
    const watchers = this.watchers;
    const iterator: AsyncIterableIterator<ConnectionState> = {
      next: () => channel.next(),
      return: () => {
        watchers.delete(channel);
        channel.discard();
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }
}
