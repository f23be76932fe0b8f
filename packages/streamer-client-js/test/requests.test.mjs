// Requests and jobs against a scripted server: answers, progress order, errors, timeouts, abort.

import assert from "node:assert/strict";
import { test } from "node:test";

import { WebSocket } from "ws";

import {
  ClientClosedError,
  ForbiddenError,
  InternalServerError,
  InvalidRequestError,
  NotFoundError,
  RemoteError,
  RequestCancelledError,
  RequestTimeoutError,
  StreamerClient,
  StreamerError,
  ValidationError,
} from "../dist/index.js";
import {
  ack,
  complete,
  error,
  eventually,
  FAST,
  progress,
  progressState,
  recordingLogger,
  requestOnTheWire,
  response,
  status,
  within,
  withServer,
} from "./support.mjs";

const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/;

test("a sync action resolves with the response to its frame", () =>
  withServer(async (server, makeClient) => {
    server.onFrame = (conn, frame) => conn.send(response(frame.id, { echo: frame.payload.text }));
    const client = makeClient();
    const result = await within(client.request("echo", { text: "hi" }));
    assert.deepEqual(result, { echo: "hi" });
    const [sent] = server.framesOf("echo");
    assert.deepEqual(Object.keys(sent), ["action", "id", "payload"]);
    assert.match(sent.id, ULID);
    assert.deepEqual(sent.payload, { text: "hi" });
  }));

test("the token is offered as a subprotocol by default and the server's choice is accepted", () =>
  withServer(async (server, makeClient) => {
    const client = makeClient({ token: "aaa.bbb.ccc" });
    await within(client.connect());
    const [handshake] = server.handshakes;
    const offered = handshake.headers["sec-websocket-protocol"].split(",").map((part) => part.trim());
    assert.deepEqual(offered, ["streamer.v1", "bearer.aaa.bbb.ccc"]);
    assert.equal(handshake.headers.authorization, undefined);
    assert.ok(!handshake.url.includes("aaa.bbb.ccc"), "the token must stay out of the URL");
    assert.equal(server.connections[0].protocol, "streamer.v1");
  }));

test("the token goes in the query string or the Authorization header only when asked", () =>
  withServer(async (server, makeClient) => {
    await within(makeClient({ token: "q.r.s", tokenPlacement: "query" }).connect());
    await within(makeClient({ token: "h.i.j", tokenPlacement: "header" }).connect());
    const [query, header] = server.handshakes;
    assert.equal(new URL(query.url, "http://x").searchParams.get("token"), "q.r.s");
    assert.equal(query.headers["sec-websocket-protocol"], undefined);
    assert.equal(header.headers.authorization, "Bearer h.i.j");
    assert.equal(header.headers["sec-websocket-protocol"], undefined);
  }));

test("an async job streams its progress in order, then resolves with its result", () =>
  withServer(async (server, makeClient) => {
    server.onFrame = (conn, frame) => {
      conn.send(ack(frame.id));
      conn.send(progress(frame.id, 1, 0, "starting"));
      conn.send(progress(frame.id, 2, 50, "halfway"));
      conn.send(complete(frame.id, { rows: 3 }));
    };
    const client = makeClient();
    const seen = [];
    const result = await within(
      client.request("generate_report", { steps: 2 }, { onProgress: (update) => seen.push(update) }),
    );
    assert.deepEqual(result, { rows: 3 });
    assert.deepEqual(
      seen.map((update) => [update.seq, update.percentage, update.message]),
      [
        [1, 0, "starting"],
        [2, 50, "halfway"],
      ],
    );
  }));

test("async progress callbacks are awaited one after the other", () =>
  withServer(async (server, makeClient) => {
    server.onFrame = (conn, frame) => {
      conn.send(ack(frame.id));
      for (let seq = 1; seq <= 3; seq += 1) conn.send(progress(frame.id, seq, seq * 25));
      conn.send(complete(frame.id, "done"));
    };
    const client = makeClient();
    const log = [];
    await within(
      client.request("generate_report", {}, {
        onProgress: async (update) => {
          log.push(`start ${update.seq}`);
          await new Promise((resolve) => setTimeout(resolve, 1));
          log.push(`end ${update.seq}`);
        },
      }),
    );
    assert.deepEqual(log, ["start 1", "end 1", "start 2", "end 2", "start 3", "end 3"]);
  }));

test("out-of-order and duplicate progress is delivered once, in seq order", () =>
  withServer(async (server, makeClient) => {
    server.onFrame = (conn, frame) => {
      conn.send(ack(frame.id));
      for (const seq of [1, 3, 2, 3, 1, 4]) conn.send(progress(frame.id, seq, seq * 20));
      conn.send(complete(frame.id, null));
    };
    const client = makeClient();
    const seqs = [];
    await within(client.request("generate_report", {}, { onProgress: (update) => seqs.push(update.seq) }));
    assert.deepEqual(seqs, [1, 3, 4]);
  }));

test("progress that arrives before the acknowledgment is kept", () =>
  withServer(async (server, makeClient) => {
    server.onFrame = (conn, frame) => {
      conn.send(progress(frame.id, 1, 30));
      conn.send(ack(frame.id));
      conn.send(complete(frame.id, 7));
    };
    const client = makeClient();
    const seqs = [];
    const result = await within(client.request("generate_report", {}, { onProgress: (u) => seqs.push(u.seq) }));
    assert.equal(result, 7);
    assert.deepEqual(seqs, [1]);
  }));

test("submit resolves once the job is acknowledged, and the job can be followed", () =>
  withServer(async (server, makeClient) => {
    const client = makeClient();
    const submitted = client.submit("generate_report", { steps: 2 });
    const conn = await server.connection(1);
    const frame = await conn.recvAction("generate_report");
    conn.send(ack(frame.id));
    const job = await within(submitted);
    assert.equal(job.id, frame.id);
    assert.equal(job.lastStatus, "QUEUED");
    assert.equal(job.done(), false);
    conn.send(progress(frame.id, 1, 50));
    conn.send(progress(frame.id, 2, 100));
    conn.send(complete(frame.id, { ok: true }));
    const percentages = [];
    for await (const update of job.progress) percentages.push(update.percentage);
    assert.deepEqual(percentages, [50, 100]);
    assert.deepEqual(await within(job.result), { ok: true });
    assert.equal(job.lastStatus, "COMPLETED");
    // A second reader starts from the beginning, as the job keeps its history.
    const again = [];
    for await (const update of job.progress) again.push(update.seq);
    assert.deepEqual(again, [1, 2]);
  }));

test("submit of a sync action gives a job that is already finished", () =>
  withServer(async (server, makeClient) => {
    server.onFrame = (conn, frame) => conn.send(response(frame.id, "now"));
    const job = await within(makeClient().submit("echo", {}));
    assert.equal(job.done(), true);
    assert.equal(await job.result, "now");
  }));

test("remote errors reject with the class of their code and keep their context", () =>
  withServer(async (server, makeClient) => {
    const answers = {
      missing: ["NOT_FOUND", NotFoundError],
      secret: ["FORBIDDEN", ForbiddenError],
      broken: ["INTERNAL_ERROR", InternalServerError],
      invalid: ["VALIDATION_ERROR", ValidationError],
    };
    server.onFrame = (conn, frame) => {
      const [code] = answers[frame.action];
      conn.send(error(frame.id, code, `${frame.action} refused`, { field: "payload.x" }));
    };
    const client = makeClient();
    for (const [action, [code, Class]] of Object.entries(answers)) {
      const failure = await within(client.request(action).catch((e) => e));
      assert.ok(failure instanceof Class, `${action}: ${failure}`);
      assert.ok(failure instanceof RemoteError && failure instanceof StreamerError);
      assert.equal(failure.code, code);
      assert.equal(failure.message, `${action} refused`);
      assert.deepEqual(failure.details, { field: "payload.x" });
      assert.equal(failure.name, Class.name);
    }
  }));

test("a job that fails after its acknowledgment rejects its result", () =>
  withServer(async (server, makeClient) => {
    server.onFrame = (conn, frame) => {
      conn.send(ack(frame.id));
      conn.send(progress(frame.id, 1, 50));
      conn.send(error(frame.id, "INTERNAL_ERROR", "the action failed"));
    };
    const job = await within(makeClient().submit("explode_later"));
    await assert.rejects(within(job.result), InternalServerError);
    assert.equal(job.lastStatus, "FAILED");
  }));

test("a request that outlives its timeout rejects and is forgotten", () =>
  withServer(async (server, makeClient) => {
    const { logger, lines } = recordingLogger();
    const client = makeClient({ logger });
    const pending = client.request("slow", {}, { timeout: 50 });
    await assert.rejects(within(pending), RequestTimeoutError);
    const conn = server.connections[0];
    const frame = await conn.recvAction("slow");
    // A late answer is for nobody: it is ignored without a fuss.
    conn.send(response(frame.id, "late"));
    conn.send(complete(frame.id, "late"));
    server.onFrame = (c, f) => c.send(response(f.id, "next"));
    assert.equal(await within(client.request("next")), "next");
    assert.deepEqual(lines.warn, []);
  }));

test("the client-wide request timeout applies when a call sets none", () =>
  withServer(async (server, makeClient) => {
    const client = makeClient({ requestTimeout: 30 });
    await assert.rejects(within(client.request("slow")), RequestTimeoutError);
    await assert.rejects(within(client.submit("slow")), RequestTimeoutError);
  }));

test("aborting a request rejects with the signal's reason and stops tracking it", () =>
  withServer(async (server, makeClient) => {
    const client = makeClient();
    const controller = new AbortController();
    const pending = client.request("generate_report", {}, { signal: controller.signal });
    const conn = await server.connection(1);
    const frame = await conn.recvAction("generate_report");
    conn.send(ack(frame.id));
    controller.abort();
    const failure = await within(pending.catch((e) => e));
    assert.equal(failure.name, "AbortError");
    // The aborted job is not re-attached after a reconnect: only ping-free silence follows.
    await conn.drop();
    const second = await server.connection(2);
    server.onFrame = (c, f) => c.send(response(f.id, "after"));
    assert.equal(await within(client.request("echo")), "after");
    assert.deepEqual(second.received.map((f) => f.action), ["echo"]);
  }));

test("an already aborted signal sends nothing", () =>
  withServer(async (server, makeClient) => {
    const client = makeClient();
    await within(client.connect());
    const reason = new Error("not today");
    await assert.rejects(within(client.request("echo", {}, { signal: AbortSignal.abort(reason) })), (e) => e === reason);
    await assert.rejects(within(client.submit("echo", {}, { signal: AbortSignal.abort(reason) })), (e) => e === reason);
    server.onFrame = (c, f) => c.send(response(f.id, 1));
    await within(client.request("probe"));
    assert.deepEqual(server.connections[0].received.map((f) => f.action), ["probe"]);
  }));

test("a bounded wait for a job's result stops waiting but leaves the job running", () =>
  withServer(async (server, makeClient) => {
    server.onFrame = (conn, frame) => conn.send(ack(frame.id));
    const job = await within(makeClient().submit("generate_report"));
    await assert.rejects(within(job.wait({ timeout: 20 })), RequestTimeoutError);
    const controller = new AbortController();
    const waiting = job.wait({ signal: controller.signal });
    controller.abort();
    await assert.rejects(within(waiting), { name: "AbortError" });
    assert.equal(job.done(), false);
    server.connections[0].send(complete(job.id, "eventually"));
    assert.equal(await within(job.wait()), "eventually");
  }));

test("a closed client refuses new work", () =>
  withServer(async (server, makeClient) => {
    const client = makeClient();
    await within(client.connect());
    await client.close();
    assert.equal(client.state, "closed");
    assert.equal(client.closed, true);
    await assert.rejects(within(client.request("echo")), ClientClosedError);
    await assert.rejects(within(client.subscribe("news")), ClientClosedError);
    await assert.rejects(within(client.connect()), ClientClosedError);
  }));

test("closing fails pending requests and jobs with ClientClosedError", () =>
  withServer(async (server, makeClient) => {
    server.onFrame = (conn, frame) => {
      if (frame.action === "generate_report") conn.send(ack(frame.id));
    };
    const client = makeClient();
    const job = await within(client.submit("generate_report"));
    const pending = client.request("never_answered");
    await eventually(() => server.framesOf("never_answered").length === 1, "the request to be sent");
    await client.close();
    await assert.rejects(within(pending), ClientClosedError);
    await assert.rejects(within(job.result), ClientClosedError);
  }));

test("invalid requests are refused before anything is sent", () =>
  withServer(async (server, makeClient) => {
    const client = makeClient();
    await within(client.connect());
    const cases = [
      () => client.request("Bad Action"),
      () => client.request("echo", { value: Number.NaN }),
      () => client.request("echo", { value: 1 / 0 }),
      () => client.request("echo", { when: new Date(0) }),
      () => client.request("echo", { text: "x".repeat(131072) }),
      () => client.request("echo", {}, { requestId: "spaces are not allowed" }),
      () => client.request("echo", { lone: "\ud800" }),
      () => client.request("echo", {}, { metadata: { trace: 17 } }),
    ];
    for (const make of cases) await assert.rejects(within(make()), InvalidRequestError);
    let deep = {};
    for (let i = 0; i < 40; i += 1) deep = { deep };
    const failure = await client.request("echo", deep).catch((e) => e);
    assert.ok(failure instanceof InvalidRequestError);
    assert.match(failure.message, /deeper than 32/);
    assert.deepEqual(server.connections[0].received, []);
  }));

test("a caller-chosen request id and metadata are sent as given", () =>
  withServer(async (server, makeClient) => {
    server.onFrame = (conn, frame) => conn.send(response(frame.id, null));
    const client = makeClient();
    await within(client.request("echo", { a: 1 }, { requestId: "req-42", metadata: { trace: "t-17" } }));
    assert.deepEqual(server.framesOf("echo")[0], {
      action: "echo",
      id: "req-42",
      payload: { a: 1 },
      metadata: { trace: "t-17" },
    });
  }));

test("reusing the id of a pending request is refused locally", () =>
  withServer(async (server, makeClient) => {
    server.onFrame = (conn, frame) => conn.send(ack(frame.id));
    const client = makeClient();
    await within(client.submit("generate_report", {}, { requestId: "same" }));
    await assert.rejects(within(client.submit("generate_report", {}, { requestId: "same" })), InvalidRequestError);
  }));

test("cancelling a queued job resolves with CANCELLED and rejects its result", () =>
  withServer(async (server, makeClient) => {
    server.onFrame = (conn, frame) => {
      if (frame.action === "generate_report") conn.send(ack(frame.id));
      if (frame.action === "cancel") {
        conn.send(status(frame.id, frame.payload.request_id, "CANCELLED", {
          error: { code: "CANCELLED", message: "cancelled by the caller", details: {} },
        }));
      }
    };
    const job = await within(makeClient().submit("generate_report"));
    assert.equal(await within(job.cancel()), "CANCELLED");
    await assert.rejects(within(job.result), RequestCancelledError);
    assert.equal(job.lastStatus, "CANCELLED");
  }));

test("cancelling a running job ends it with the cancelled error frame", () =>
  withServer(async (server, makeClient) => {
    server.onFrame = (conn, frame) => {
      if (frame.action === "generate_report") {
        conn.send(ack(frame.id));
        conn.send(progress(frame.id, 1, 10));
      }
      if (frame.action === "cancel") {
        const jobId = frame.payload.request_id;
        conn.send(status(frame.id, jobId, "PROCESSING", { progress: progressState(1, 10) }));
        conn.send(error(jobId, "CANCELLED", "request was cancelled"));
      }
    };
    const job = await within(makeClient().submit("generate_report"));
    assert.equal(await within(job.cancel()), "PROCESSING");
    const failure = await within(job.result.catch((e) => e));
    assert.ok(failure instanceof RequestCancelledError);
    assert.equal(failure.code, "CANCELLED");
  }));

test("an acknowledgment of a request that already ended fetches how it ended", () =>
  withServer(async (server, makeClient) => {
    server.onFrame = (conn, frame) => {
      if (frame.action === "generate_report") conn.send(ack(frame.id, "generate_report", "COMPLETED"));
      if (frame.action === "status") {
        conn.send(status(frame.id, frame.payload.request_id, "COMPLETED", { result: { cached: true } }));
      }
    };
    const result = await within(makeClient().request("generate_report", {}, { requestId: "done-before" }));
    assert.deepEqual(result, { cached: true });
  }));

test("job.status() asks the server and applies what it says", () =>
  withServer(async (server, makeClient) => {
    server.onFrame = (conn, frame) => {
      if (frame.action === "generate_report") conn.send(ack(frame.id));
      if (frame.action === "status") {
        conn.send(status(frame.id, frame.payload.request_id, "PROCESSING", { progress: progressState(3, 60, "rendering") }));
      }
    };
    const job = await within(makeClient().submit("generate_report"));
    const snapshot = await within(job.status());
    assert.equal(snapshot.status, "PROCESSING");
    assert.equal(snapshot.progress.seq, 3);
    assert.equal(job.latestProgress.message, "rendering");
    assert.equal(job.lastStatus, "PROCESSING");
  }));

test("malformed frames are skipped with a warning and the connection carries on", () =>
  withServer(async (server, makeClient) => {
    const { logger, lines } = recordingLogger();
    const { pending, conn, frame } = await requestOnTheWire(server, makeClient({ logger }));
    const garbage = [
      "not json",
      "[1, 2]",
      JSON.stringify({ request_id: frame.id, result: 1 }),
      JSON.stringify({ type: "mystery", request_id: frame.id }),
      JSON.stringify({ ...response(frame.id, 1), extra: true }),
      JSON.stringify(progress(frame.id, 1.5, 10)),
      JSON.stringify(progress(frame.id, 1, 101)),
      JSON.stringify(error(frame.id, "TEAPOT")),
      `{"type":"response","request_id":"${frame.id}","result":1e400}`,
      `{"type":"response","request_id":"${frame.id}","result":"\\ud800"}`,
    ];
    for (const text of garbage) conn.send(text);
    conn.send(response(frame.id, "fine"));
    assert.equal(await within(pending), "fine");
    assert.equal(lines.warn.length, garbage.length);
    for (const line of lines.warn) assert.match(line, /ignored a malformed frame/);
  }));

test("an error frame without a request id is reported and changes nothing", () =>
  withServer(async (server, makeClient) => {
    const { logger, lines } = recordingLogger();
    const { pending, conn, frame } = await requestOnTheWire(server, makeClient({ logger }));
    conn.send(error(null, "VALIDATION_ERROR", "frame is not valid JSON"));
    conn.send(response(frame.id, "ok"));
    assert.equal(await within(pending), "ok");
    assert.match(lines.warn.join("\n"), /frame is not valid JSON/);
  }));

test("every frame listener sees each parsed frame", () =>
  withServer(async (server, makeClient) => {
    server.onFrame = (conn, frame) => conn.send(response(frame.id, 1));
    const client = makeClient();
    const types = [];
    const stop = client.on("frame", (frame) => types.push(frame.type));
    await within(client.request("echo"));
    stop();
    await within(client.request("echo"));
    assert.deepEqual(types, ["response"]);
    assert.throws(() => client.on("error", () => {}), TypeError);
  }));

test("Node without a WebSocket implementation is told what to pass", () => {
  if (globalThis.WebSocket !== undefined) return; // Node 22 and later have one built in.
  assert.throws(() => new StreamerClient("ws://127.0.0.1:1/dev"), /pass one/);
  assert.ok(new StreamerClient("ws://127.0.0.1:1/dev", { WebSocket, ...FAST }));
});
