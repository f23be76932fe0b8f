// Reconnects against a scripted server: fresh tokens, re-attached jobs, unknown outcomes,
// the offline queue, refused handshakes, heartbeat and renewal.

import assert from "node:assert/strict";
import { test } from "node:test";

import { WebSocket } from "ws";

import {
  AuthenticationFailedError,
  ConnectionFailedError,
  NotFoundError,
  OutcomeUnknownError,
  StreamerClient,
} from "../dist/index.js";
import {
  acceptedJob,
  ack,
  complete,
  completedWhenAsked,
  error,
  event,
  eventually,
  FAST,
  progress,
  progressState,
  recordingLogger,
  response,
  status,
  statusQueryAfterDrop,
  subscribed,
  unsubscribed,
  within,
  withServer,
} from "./support.mjs";

const tokenOf = (handshake) =>
  handshake.headers["sec-websocket-protocol"]
    .split(",")
    .map((part) => part.trim())
    .find((part) => part.startsWith("bearer."))
    ?.slice("bearer.".length);

test("the token is asked for again on every reconnect", () =>
  withServer(async (server, makeClient) => {
    let issued = 0;
    const client = makeClient({
      token: async () => {
        issued += 1;
        return `tok-${issued}`;
      },
    });
    await within(client.connect());
    const first = await server.connection(1);
    await first.drop();
    await server.connection(2);
    await first.closed;
    assert.deepEqual(server.handshakes.map(tokenOf), ["tok-1", "tok-2"]);
  }));

test("a failing token provider fails the first connection clearly and is retried later", () =>
  withServer(async (server, makeClient) => {
    let calls = 0;
    const client = makeClient({
      token: () => {
        calls += 1;
        if (calls === 1 || calls === 3) throw new Error("identity provider down");
        return "tok";
      },
    });
    await assert.rejects(within(client.connect()), (e) => {
      return e instanceof ConnectionFailedError && /identity provider down/.test(e.message);
    });
    await within(client.connect());
    const first = await server.connection(1);
    await first.drop();
    // The third call fails, the fourth reconnects.
    await server.connection(2);
    assert.equal(calls, 4);
  }));

test("topics are subscribed again after a reconnect and keep delivering", () =>
  withServer(async (server, makeClient) => {
    server.onFrame = (conn, frame) => {
      if (frame.action === "subscribe") conn.send(subscribed(frame.id, frame.payload.topic));
      if (frame.action === "unsubscribe") conn.send(unsubscribed(frame.id, frame.payload.topic));
    };
    const client = makeClient();
    const subscription = await within(client.subscribe("news"));
    const first = server.connections[0];
    first.send(event("news", "before", "E1"));
    await first.drop();
    const second = await server.connection(2);
    await eventually(() => second.received.some((f) => f.action === "subscribe"), "the topic to be subscribed again");
    second.send(event("news", "after", "E2"));
    const got = [];
    for await (const item of subscription) {
      got.push(item.data);
      if (got.length === 2) break;
    }
    assert.deepEqual(got, ["before", "after"]);
    assert.deepEqual(second.received.filter((f) => f.action === "subscribe").map((f) => f.payload), [{ topic: "news" }]);
  }));

test("an accepted job is re-attached with status and resumes its progress without repeats", () =>
  withServer(async (server, makeClient) => {
    const { job, first } = await acceptedJob(server, makeClient());
    first.send(progress(job.id, 1, 25));
    await eventually(() => job.latestProgress?.seq === 1, "the first progress");

    const { second, query } = await statusQueryAfterDrop(server, first);
    assert.deepEqual(query.payload, { request_id: job.id });
    second.send(status(query.id, job.id, "PROCESSING", { progress: progressState(2, 50) }));
    second.send(progress(job.id, 2, 50));
    second.send(progress(job.id, 3, 75));
    second.send(complete(job.id, "report"));

    const seqs = [];
    for await (const update of job.progress) seqs.push(update.seq);
    assert.deepEqual(seqs, [1, 2, 3]);
    assert.equal(await within(job.result), "report");
    // The request itself was never sent again: the server de-duplicates, but need not.
    assert.equal(server.framesOf("generate_report").length, 1);
  }));

test("a snapshot older than the progress already delivered is not delivered again", () =>
  withServer(async (server, makeClient) => {
    const { job, first } = await acceptedJob(server, makeClient());
    first.send(progress(job.id, 1, 10));
    first.send(progress(job.id, 2, 20));
    await eventually(() => job.latestProgress?.seq === 2, "two updates");
    const { second, query } = await statusQueryAfterDrop(server, first);
    // The stored state lags behind what the socket already delivered.
    second.send(status(query.id, job.id, "PROCESSING", { progress: progressState(1, 10) }));
    second.send(progress(job.id, 3, 30));
    second.send(complete(job.id, "done"));
    const seqs = [];
    for await (const update of job.progress) seqs.push(update.seq);
    assert.deepEqual(seqs, [1, 2, 3]);
  }));

test("a job that completed while disconnected is resolved once, from its status", () =>
  withServer(async (server, makeClient) => {
    const { job, first } = await acceptedJob(server, makeClient());
    const { second, query } = await statusQueryAfterDrop(server, first);
    second.send(status(query.id, job.id, "COMPLETED", { progress: progressState(4, 100), result: { rows: 40 } }));
    // The final frame sent to the lost socket may be replayed: it changes nothing now.
    second.send(complete(job.id, { rows: "twice" }));
    assert.deepEqual(await within(job.result), { rows: 40 });
    assert.equal(job.latestProgress.seq, 4);
  }));

test("a job the server no longer knows fails with NOT_FOUND after a reconnect", () =>
  withServer(async (server, makeClient) => {
    const { job, first } = await acceptedJob(server, makeClient());
    const { second, query } = await statusQueryAfterDrop(server, first);
    second.send(error(query.id, "NOT_FOUND", "no such request"));
    await assert.rejects(within(job.result), NotFoundError);
  }));

test("a transient refusal of a status query is asked again", () =>
  withServer(async (server, makeClient) => {
    const { job, first } = await acceptedJob(server, makeClient());
    const { second, query } = await statusQueryAfterDrop(server, first);
    second.send(error(query.id, "INTERNAL_ERROR", "storage hiccup"));
    const again = await second.recvAction("status");
    assert.equal(again.id, query.id);
    second.send(status(again.id, job.id, "COMPLETED", { result: "ok" }));
    assert.equal(await within(job.result), "ok");
  }));

test("a request whose answer was lost fails with an unknown outcome and is never resent", () =>
  withServer(async (server, makeClient) => {
    const client = makeClient();
    const pending = client.request("charge_card", { cents: 500 });
    const submitted = client.submit("generate_report");
    const first = await server.connection(1);
    await first.recvAction("charge_card");
    await first.recvAction("generate_report");
    await first.drop();
    const failure = await within(pending.catch((e) => e));
    assert.ok(failure instanceof OutcomeUnknownError, String(failure));
    assert.ok(failure instanceof ConnectionFailedError);
    assert.equal(failure.code, "OUTCOME_UNKNOWN");
    assert.equal(failure.action, "charge_card");
    assert.match(failure.message, /outcome unknown/);
    await assert.rejects(within(submitted), OutcomeUnknownError);
    const second = await server.connection(2);
    server.onFrame = (conn, frame) => conn.send(response(frame.id, "probe"));
    await within(client.request("probe"));
    assert.deepEqual(second.received.map((f) => f.action), ["probe"]);
    assert.equal(server.framesOf("charge_card").length, 1);
  }));

test("with resendUnanswered, a request whose answer was lost is sent again with the same id", () =>
  withServer(async (server, makeClient) => {
    const client = makeClient({ resendUnanswered: true });
    const pending = client.request("charge_card");
    const first = await server.connection(1);
    const frame = await first.recvAction("charge_card");
    await first.drop();
    const second = await server.connection(2);
    const again = await second.recvAction("charge_card");
    assert.equal(again.id, frame.id);
    second.send(response(again.id, "charged once"));
    assert.equal(await within(pending), "charged once");
  }));

test("requests made while disconnected wait in a bounded queue and go out in order", () =>
  withServer(async (server, makeClient) => {
    const client = makeClient({ maxQueued: 3 });
    await within(client.connect());
    server.refuse = 503;
    await server.connections[0].drop();
    await eventually(() => client.state === "reconnecting", "the client to notice the drop");
    const queued = ["one", "two", "three"].map((action) => client.request(action));
    await assert.rejects(within(client.request("four")), (e) => {
      return e instanceof ConnectionFailedError && /already wait/.test(e.message);
    });
    await assert.rejects(within(client.subscribe("news")), ConnectionFailedError);
    await eventually(() => server.handshakes.length >= 3, "two refused reconnect attempts");
    server.onFrame = (conn, frame) => conn.send(response(frame.id, frame.action));
    server.refuse = null;
    assert.deepEqual(await within(Promise.all(queued)), ["one", "two", "three"]);
    assert.deepEqual(server.connections[1].received.map((f) => f.action), ["one", "two", "three"]);
  }));

test("with queueing off, requests made while disconnected fail at once", () =>
  withServer(async (server, makeClient) => {
    const client = makeClient({ queueWhileDisconnected: false });
    await within(client.connect());
    server.refuse = 503;
    await server.connections[0].drop();
    await eventually(() => client.state === "reconnecting", "the client to notice the drop");
    await assert.rejects(within(client.request("echo")), (e) => {
      return e instanceof ConnectionFailedError && /queueing is disabled/.test(e.message);
    });
  }));

test("a refused token fails the first connection with AuthenticationFailedError", () =>
  withServer(async (server, makeClient) => {
    for (const code of [401, 403]) {
      server.refuse = code;
      const client = makeClient();
      const failure = await within(client.connect().catch((e) => e));
      assert.ok(failure instanceof AuthenticationFailedError, String(failure));
      assert.ok(failure instanceof ConnectionFailedError);
      assert.equal(failure.status, code);
      assert.equal(failure.code, "AUTHENTICATION_FAILED");
      assert.equal(client.state, "closed");
      // A call made without connect() first reports the same refusal.
      await assert.rejects(within(client.request("echo")), AuthenticationFailedError);
    }
    assert.equal(server.connections.length, 0);
  }));

test("a connection that failed can be tried again", () =>
  withServer(async (server, makeClient) => {
    server.refuse = 401;
    const client = makeClient();
    await assert.rejects(within(client.connect()), AuthenticationFailedError);
    server.refuse = null;
    await within(client.connect());
    assert.equal(client.state, "connected");
  }));

test("a refused reconnect ends the client and fails what waits", () =>
  withServer(async (server, makeClient) => {
    server.onFrame = (conn, frame) => conn.send(ack(frame.id));
    const client = makeClient();
    const job = await within(client.submit("generate_report"));
    server.refuse = 401;
    await server.connections[0].drop();
    const failure = await within(job.result.catch((e) => e));
    assert.ok(failure instanceof AuthenticationFailedError, String(failure));
    assert.equal(client.state, "closed");
    assert.equal(client.closed, true);
    await assert.rejects(within(client.request("echo")), ConnectionFailedError);
    assert.equal(server.handshakes.length, 2, "a refused token is not tried again");
  }));

test("an unreachable server fails the first connection at once", async () => {
  const client = new StreamerClient("ws://127.0.0.1:9/nothing-listens", { WebSocket, ...FAST });
  await assert.rejects(within(client.connect()), ConnectionFailedError);
  await client.close();
});

test("reconnecting gives up after the attempt limit", () =>
  withServer(async (server, makeClient) => {
    server.onFrame = (conn, frame) => conn.send(ack(frame.id));
    const client = makeClient({ maxReconnectAttempts: 2 });
    const job = await within(client.submit("generate_report"));
    server.refuse = 503;
    await server.connections[0].drop();
    const failure = await within(job.result.catch((e) => e));
    assert.ok(failure instanceof ConnectionFailedError);
    assert.match(failure.message, /gave up after 2 reconnect attempts/);
    assert.equal(server.handshakes.length, 3);
  }));

test("a throttled reconnect handshake is tried again", () =>
  withServer(async (server, makeClient) => {
    const client = makeClient();
    await within(client.connect());
    server.refuse = 429;
    await server.connections[0].drop();
    await eventually(() => server.handshakes.length >= 3, "two throttled attempts");
    server.refuse = null;
    await server.connection(2);
    await eventually(() => client.state === "connected", "the client to reconnect");
  }));

test("a server that drops every new connection exhausts the attempts", () =>
  withServer(async (server, makeClient) => {
    const client = makeClient({ maxReconnectAttempts: 3 });
    await within(client.connect());
    const closed = new Promise((resolve) => client.on("state", (state) => state === "closed" && resolve()));
    server.wss.on("connection", (ws) => ws.terminate());
    await server.connections[0].drop();
    await within(closed, "the client to give up");
    await assert.rejects(within(client.request("echo")), /keeps closing the connection/);
  }));

test("without reconnect a lost connection fails the job", () =>
  withServer(async (server, makeClient) => {
    server.onFrame = (conn, frame) => conn.send(ack(frame.id));
    const client = makeClient({ reconnect: false });
    const job = await within(client.submit("generate_report"));
    await server.connections[0].drop();
    await assert.rejects(within(job.result), /connection to the server was lost/);
    assert.equal(server.handshakes.length, 1);
  }));

test("connection states are observable by listener and by iteration", () =>
  withServer(async (server, makeClient) => {
    const client = makeClient();
    const heard = [];
    client.on("state", (state) => heard.push(state));
    const iterated = (async () => {
      const seen = [];
      for await (const state of client.states()) seen.push(state);
      return seen;
    })();
    await within(client.connect());
    await server.connections[0].drop();
    await server.connection(2);
    await eventually(() => heard.length === 4, "the reconnect to be announced");
    await client.close();
    const expected = ["connecting", "connected", "reconnecting", "connected", "closed"];
    assert.deepEqual(heard, expected);
    assert.deepEqual(await within(iterated), ["idle", ...expected]);
  }));

test("the heartbeat pings the server", () =>
  withServer(async (server, makeClient) => {
    const client = makeClient({ heartbeatInterval: 10 });
    await within(client.connect());
    await eventually(() => server.framesOf("ping").length >= 3, "three pings");
    assert.equal(server.connections.length, 1);
  }));

test("a ping refused by the server still proves the socket alive", () =>
  withServer(async (server, makeClient) => {
    server.autoPong = false;
    server.onFrame = (conn, frame) => {
      if (frame.action === "ping") conn.send(error(frame.id, "RATE_LIMITED", "slow down"));
    };
    const client = makeClient({ heartbeatInterval: 10, heartbeatTimeout: 5_000 });
    await within(client.connect());
    await eventually(() => server.framesOf("ping").length >= 3, "three refused pings");
    assert.equal(server.connections.length, 1);
    assert.equal(client.state, "connected");
  }));

test("an unanswered heartbeat reconnects", () =>
  withServer(async (server, makeClient) => {
    server.autoPong = false;
    server.onFrame = () => {};
    const client = makeClient({ heartbeatInterval: 10, heartbeatTimeout: 30 });
    await within(client.connect());
    await server.connection(2);
    assert.ok(server.framesOf("ping").length >= 1);
  }));

test("a job whose final frame was lost is recovered by polling its status", () =>
  withServer(async (server, makeClient) => {
    server.onFrame = completedWhenAsked("polled");
    const client = makeClient({ heartbeatInterval: 10 });
    const job = await within(client.submit("generate_report"));
    assert.equal(await within(job.result), "polled");
    assert.equal(server.connections.length, 1);
  }));

test("jobs that are heard from between heartbeats are not polled", () =>
  withServer(async (server, makeClient) => {
    let jobId = null;
    let seq = 0;
    server.autoPong = false;
    server.onFrame = (conn, frame) => {
      if (frame.action === "generate_report") {
        jobId = frame.id;
        conn.send(ack(frame.id));
      }
      if (frame.action === "ping") {
        if (jobId !== null) conn.send(progress(jobId, (seq += 1), Math.min(seq, 100)));
        conn.send({ type: "pong", request_id: frame.id, server_time: 0 });
      }
    };
    const client = makeClient({ heartbeatInterval: 10 });
    const job = await within(client.submit("generate_report"));
    await eventually(() => (job.latestProgress?.seq ?? 0) >= 4, "several heartbeats with progress");
    assert.equal(server.framesOf("status").length, 0);
  }));

test("refused restore frames are sent again after a backoff", () =>
  withServer(async (server, makeClient) => {
    let refusals = 0;
    server.onFrame = (conn, frame) => {
      if (frame.action !== "subscribe") return;
      if (conn.index === 2 && refusals === 0) {
        refusals += 1;
        conn.send(error(frame.id, "RATE_LIMITED", "too many messages"));
        return;
      }
      conn.send(subscribed(frame.id, frame.payload.topic));
    };
    const { logger, lines } = recordingLogger();
    const client = makeClient({ logger });
    const subscription = await within(client.subscribe("news"));
    await server.connections[0].drop();
    const second = await server.connection(2);
    await eventually(() => second.received.filter((f) => f.action === "subscribe").length === 2, "the subscribe to be retried");
    second.send(event("news", "still here", "E9"));
    const next = await within(subscription.next());
    assert.equal(next.value.data, "still here");
    assert.match(lines.warn.join("\n"), /RATE_LIMITED/);
  }));

test("the connection is renewed before its age limit without losing the job", () =>
  withServer(async (server, makeClient) => {
    server.onFrame = completedWhenAsked("renewed");
    const client = makeClient({ maxConnectionAge: 30 });
    const job = await within(client.submit("generate_report"));
    assert.equal(await within(job.result), "renewed");
    assert.ok(server.connections.length >= 2);
    assert.equal(server.framesOf("generate_report").length, 1);
  }));

test("renewal lets a call in flight finish on the old socket", () =>
  withServer(async (server, makeClient) => {
    server.onFrame = (conn, frame) => {
      // Answered after the age limit has passed, while the client drains the old socket.
      if (frame.action === "slow") setTimeout(() => conn.send(response(frame.id, "on the old socket")), 100);
    };
    const client = makeClient({ maxConnectionAge: 20, heartbeatTimeout: 5_000 });
    assert.equal(await within(client.request("slow")), "on the old socket");
    await server.connection(2);
    assert.equal(server.framesOf("slow").length, 1);
  }));
