// A scripted WebSocket server and frame builders for the client's tests.
//
// Each test starts a real `ws` server on 127.0.0.1 and scripts what it answers, so the client
// is exercised over real sockets, real handshakes and real disconnects, with every edge case
// (reordered frames, duplicates, drops, garbage, refused handshakes) under the test's control.
// The client under test is the built package (dist/), which is what ships.

import { WebSocket, WebSocketServer } from "ws";

import { StreamerClient } from "../dist/index.js";

// Hang guard only: tests assert on order and counts, never on how long anything took.
export const WAIT = 10_000;

/** Short delays keep reconnect tests quick; the heartbeat is off unless a test turns it on. */
export const FAST = {
  backoffInitial: 10,
  backoffMax: 50,
  heartbeatInterval: null,
  openTimeout: 5_000,
};

/** Resolve with `promise`, or fail the test if it takes longer than the hang guard. */
export function within(promise, what = "the awaited step", ms = WAIT) {
  let timer;
  const guard = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([promise, guard]).finally(() => clearTimeout(timer));
}

/** Wait until `condition()` holds, polling; fails with `what` after the hang guard. */
export async function eventually(condition, what) {
  const deadline = Date.now() + WAIT;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`never happened: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A queue that async code awaits items from. */
class Inbox {
  items = [];
  waiters = [];

  push(item) {
    const waiter = this.waiters.shift();
    if (waiter) waiter(item);
    else this.items.push(item);
  }

  next() {
    if (this.items.length > 0) return Promise.resolve(this.items.shift());
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}

/** One accepted socket, seen from the server side. */
export class FakeConnection {
  constructor(server, ws, request, index) {
    this.server = server;
    this.ws = ws;
    this.request = request;
    this.index = index;
    this.headers = request.headers;
    this.url = new URL(request.url, "http://localhost");
    this.protocol = ws.protocol;
    this.inbox = new Inbox();
    this.received = [];
    this.closed = new Promise((resolve) => ws.once("close", resolve));
  }

  /** The next client frame (pings are answered and skipped when the server auto-pongs). */
  recv(what = "a client frame") {
    return within(this.inbox.next(), `${what} on connection ${this.index}`);
  }

  /** Skip frames until one with `action` arrives. */
  async recvAction(action) {
    for (;;) {
      const frame = await this.recv(`a ${action} frame`);
      if (frame.action === action) return frame;
    }
  }

  send(frame) {
    this.ws.send(typeof frame === "string" ? frame : JSON.stringify(frame));
  }

  /** Close from the server side and wait until the socket is gone. */
  async close(code = 1000) {
    this.ws.close(code);
    await within(this.closed, "the socket to close");
  }

  /** Drop the TCP connection without a closing handshake, like a network failure. */
  async drop() {
    this.ws.terminate();
    await within(this.closed, "the socket to drop");
  }
}

/**
 * Accepts connections and records everything; `onFrame(connection, frame)` scripts answers.
 *
 * `refuse` set to an HTTP status makes the next handshakes fail with it, like a gateway whose
 * authorizer refuses the token (401) or that is overloaded (503).
 */
export class FakeServer {
  connections = [];
  refuse = null;
  autoPong = true;
  onFrame = null;
  handshakes = [];
  errors = [];
  arrivals = new Inbox();

  async start() {
    this.wss = new WebSocketServer({
      host: "127.0.0.1",
      port: 0,
      // Echo the subprotocol that is not the token, as the gateway's `$connect` does.
      handleProtocols: (protocols) => {
        for (const protocol of protocols) if (!protocol.startsWith("bearer.")) return protocol;
        return false;
      },
      verifyClient: (info, done) => {
        this.handshakes.push({ url: info.req.url, headers: info.req.headers });
        if (this.refuse !== null) done(false, this.refuse);
        else done(true);
      },
    });
    this.wss.on("connection", (ws, request) => {
      const connection = new FakeConnection(this, ws, request, this.connections.length + 1);
      this.connections.push(connection);
      ws.on("message", (data) => {
        let frame;
        try {
          frame = JSON.parse(data.toString());
        } catch (error) {
          this.errors.push(error);
          return;
        }
        connection.received.push(frame);
        if (this.autoPong && frame.action === "ping") {
          connection.send(pong(frame.id));
          return;
        }
        if (this.onFrame) {
          try {
            this.onFrame(connection, frame);
          } catch (error) {
            this.errors.push(error);
          }
          return;
        }
        connection.inbox.push(frame);
      });
      this.arrivals.push(connection);
    });
    await new Promise((resolve) => this.wss.once("listening", resolve));
    this.url = `ws://127.0.0.1:${this.wss.address().port}/dev`;
    return this;
  }

  /** The `index`-th connection (1-based), once it has arrived. */
  async connection(index) {
    await within(
      (async () => {
        while (this.connections.length < index) await this.arrivals.next();
      })(),
      `connection ${index}`,
    );
    return this.connections[index - 1];
  }

  /** Every frame the server received with `action`, across all connections. */
  framesOf(action) {
    return this.connections.flatMap((connection) => connection.received).filter((f) => f.action === action);
  }

  async stop() {
    for (const connection of this.connections) connection.ws.terminate();
    await new Promise((resolve) => this.wss.close(resolve));
  }
}

/** A logger that keeps what the client reports, so tests can assert on warnings. */
export function recordingLogger() {
  const lines = { debug: [], info: [], warn: [], error: [] };
  const logger = {};
  for (const level of Object.keys(lines)) {
    logger[level] = (message, ...details) => lines[level].push([message, ...details].map(String).join(" "));
  }
  return { logger, lines };
}

/**
 * Run `body(server, makeClient)` with a fresh server; every client made is closed afterwards
 * and the server's own script errors fail the test.
 */
export async function withServer(body) {
  const server = await new FakeServer().start();
  const clients = [];
  const makeClient = (options = {}) => {
    const { logger } = recordingLogger();
    const client = new StreamerClient(server.url, { WebSocket, token: "tok-1", logger, ...FAST, ...options });
    clients.push(client);
    return client;
  };
  try {
    await body(server, makeClient);
  } finally {
    await Promise.all(clients.map((client) => client.close()));
    await server.stop();
  }
  if (server.errors.length > 0) throw server.errors[0];
}

/** Submit `action` and acknowledge it on the first connection: the job, and that connection. */
export async function acceptedJob(server, client, action = "generate_report") {
  const submitted = client.submit(action);
  const first = await server.connection(1);
  first.send(ack((await first.recvAction(action)).id, action));
  return { job: await within(submitted), first };
}

/** Drop `connection`: the one the client reconnects on, and the status query it sends there. */
export async function statusQueryAfterDrop(server, connection) {
  await connection.drop();
  const next = await server.connection(connection.index + 1);
  return { second: next, query: await next.recvAction("status") };
}

/** A script that accepts `generate_report` jobs and, asked for one's status, says it COMPLETED with `result`. */
export const completedWhenAsked = (result) => (conn, frame) => {
  if (frame.action === "generate_report") conn.send(ack(frame.id));
  if (frame.action === "status") conn.send(status(frame.id, frame.payload.request_id, "COMPLETED", { result }));
};

/** Send `action` from `client` and wait for its frame on the first connection, unanswered. */
export async function requestOnTheWire(server, client, action = "echo") {
  const pending = client.request(action);
  const conn = await server.connection(1);
  return { pending, conn, frame: await conn.recvAction(action) };
}

// ---------------------------------------------------------------- server frames

export const ack = (requestId, action = "generate_report", status = "QUEUED") => ({
  type: "acknowledgment",
  request_id: requestId,
  action,
  status,
});
export const response = (requestId, result = null) => ({ type: "response", request_id: requestId, result });
export const progress = (requestId, seq, percentage, message = null) => ({
  type: "progress",
  request_id: requestId,
  percentage,
  message,
  metadata: {},
  seq,
});
export const complete = (requestId, result = null) => ({ type: "complete", request_id: requestId, result });
export const error = (requestId, code, message = "refused", details = {}) => ({
  type: "error",
  request_id: requestId,
  code,
  message,
  details,
});
export const event = (topic, data, id) => ({ type: "event", topic, data, id, published_at: 1764000000000 });
export const subscribed = (requestId, topic) => ({ type: "subscribed", request_id: requestId, topic });
export const unsubscribed = (requestId, topic) => ({ type: "unsubscribed", request_id: requestId, topic });
export const pong = (requestId) => ({ type: "pong", request_id: requestId, server_time: 1764000000000 });
export const status = (requestId, jobId, state, { progress: last = null, result = null, error: info = null } = {}) => ({
  type: "status",
  request_id: requestId,
  snapshot: {
    request_id: jobId,
    action: "generate_report",
    status: state,
    progress: last,
    result,
    error: info,
    created_at: 1764000000000,
    updated_at: 1764000001000,
  },
});
export const progressState = (seq, percentage, message = null) => ({ percentage, message, metadata: {}, seq });
