// Topic subscriptions against a scripted server: delivery, sharing, refusal, leaving, buffering.

import assert from "node:assert/strict";
import { test } from "node:test";

import { ClientClosedError, ConnectionFailedError, InvalidRequestError, ValidationError } from "../dist/index.js";
import {
  error,
  event,
  eventually,
  recordingLogger,
  subscribed,
  unsubscribed,
  within,
  withServer,
} from "./support.mjs";

/** Answer subscribe and unsubscribe as the server does, refusing topics in `refused`. */
function pubsub(server, refused = new Set()) {
  server.onFrame = (conn, frame) => {
    const topic = frame.payload?.topic;
    if (frame.action === "subscribe") {
      if (refused.has(topic)) conn.send(error(frame.id, "VALIDATION_ERROR", "too many topics", { limit: 100 }));
      else conn.send(subscribed(frame.id, topic));
    }
    if (frame.action === "unsubscribe") conn.send(unsubscribed(frame.id, topic));
  };
}

test("events of a topic arrive in order and leaving the loop unsubscribes", () =>
  withServer(async (server, makeClient) => {
    pubsub(server);
    const client = makeClient();
    const subscription = await within(client.subscribe("prices/eur"));
    const conn = server.connections[0];
    for (let i = 1; i <= 3; i += 1) conn.send(event("prices/eur", { bid: i }, `E${i}`));
    const bids = [];
    for await (const item of subscription) {
      assert.equal(item.type, "event");
      assert.equal(item.topic, "prices/eur");
      bids.push(item.data.bid);
      if (bids.length === 3) break;
    }
    assert.deepEqual(bids, [1, 2, 3]);
    await eventually(() => server.framesOf("unsubscribe").length === 1, "the unsubscribe");
    assert.deepEqual(server.framesOf("unsubscribe")[0].payload, { topic: "prices/eur" });
    assert.equal(subscription.closed, true);
  }));

test("two local subscribers share one server subscription", () =>
  withServer(async (server, makeClient) => {
    pubsub(server);
    const client = makeClient();
    const first = await within(client.subscribe("news"));
    const second = await within(client.subscribe("news"));
    assert.equal(server.framesOf("subscribe").length, 1);
    server.connections[0].send(event("news", "hello", "E1"));
    assert.equal((await within(first.next())).value.data, "hello");
    assert.equal((await within(second.next())).value.data, "hello");
    await within(first.unsubscribe());
    // The other subscriber still needs the topic: the server is not told to drop it.
    assert.equal(server.framesOf("unsubscribe").length, 0);
    server.connections[0].send(event("news", "still", "E2"));
    assert.equal((await within(second.next())).value.data, "still");
    await within(second.unsubscribe());
    assert.equal(server.framesOf("unsubscribe").length, 1);
  }));

test("a refused subscription rejects with its typed error and leaves requests alone", () =>
  withServer(async (server, makeClient) => {
    pubsub(server, new Set(["crowded"]));
    const client = makeClient();
    const failure = await within(client.subscribe("crowded").catch((e) => e));
    assert.ok(failure instanceof ValidationError);
    assert.deepEqual(failure.details, { limit: 100 });
    const fine = await within(client.subscribe("quiet"));
    assert.equal(fine.topic, "quiet");
  }));

test("an invalid topic is refused before anything is sent", () =>
  withServer(async (server, makeClient) => {
    const client = makeClient();
    for (const topic of ["", "has space", "hash#", "dollar$", "x".repeat(257)]) {
      await assert.rejects(within(client.subscribe(topic)), InvalidRequestError);
    }
    assert.deepEqual(server.connections[0].received, []);
  }));

test("an event delivered twice reaches the subscriber once", () =>
  withServer(async (server, makeClient) => {
    pubsub(server);
    const client = makeClient();
    const subscription = await within(client.subscribe("news"));
    const conn = server.connections[0];
    conn.send(event("news", "one", "E1"));
    conn.send(event("news", "one again", "E1"));
    conn.send(event("news", "two", "E2"));
    assert.equal((await within(subscription.next())).value.data, "one");
    assert.equal((await within(subscription.next())).value.data, "two");
  }));

test("closing the client ends iteration quietly", () =>
  withServer(async (server, makeClient) => {
    pubsub(server);
    const client = makeClient();
    const subscription = await within(client.subscribe("news"));
    const iterating = (async () => {
      const got = [];
      for await (const item of subscription) got.push(item);
      return got;
    })();
    await client.close();
    assert.deepEqual(await within(iterating), []);
  }));

test("a client that gives up ends iteration with the reason", () =>
  withServer(async (server, makeClient) => {
    pubsub(server);
    const client = makeClient({ reconnect: false });
    const subscription = await within(client.subscribe("news"));
    const next = subscription.next();
    await server.connections[0].drop();
    await assert.rejects(within(next), ConnectionFailedError);
  }));

test("a slow consumer loses the oldest events, and is told", () =>
  withServer(async (server, makeClient) => {
    pubsub(server);
    const { logger, lines } = recordingLogger();
    const client = makeClient({ maxBufferedEvents: 2, logger });
    const subscription = await within(client.subscribe("firehose"));
    const conn = server.connections[0];
    for (let i = 1; i <= 5; i += 1) conn.send(event("firehose", i, `E${i}`));
    await eventually(() => subscription.dropped === 3, "three events dropped");
    assert.equal((await within(subscription.next())).value.data, 4);
    assert.equal((await within(subscription.next())).value.data, 5);
    assert.equal(lines.warn.length, 3);
  }));

test("aborting a subscribe before confirmation gives the topic back", () =>
  withServer(async (server, makeClient) => {
    const client = makeClient();
    const controller = new AbortController();
    const pending = client.subscribe("slow-topic", { signal: controller.signal });
    const conn = await server.connection(1);
    const frame = await conn.recvAction("subscribe");
    controller.abort();
    await assert.rejects(within(pending), { name: "AbortError" });
    // The server did subscribe: the client takes it back.
    conn.send(subscribed(frame.id, "slow-topic"));
    const leave = await conn.recvAction("unsubscribe");
    assert.deepEqual(leave.payload, { topic: "slow-topic" });
  }));

test("subscribing while disconnected completes after the reconnect", () =>
  withServer(async (server, makeClient) => {
    pubsub(server);
    const client = makeClient();
    await within(client.connect());
    server.refuse = 503;
    await server.connections[0].drop();
    await eventually(() => client.state === "reconnecting", "the client to notice the drop");
    const pending = client.subscribe("later");
    server.refuse = null;
    const subscription = await within(pending);
    const conn = await server.connection(2);
    conn.send(event("later", "arrived", "E1"));
    assert.equal((await within(subscription.next())).value.data, "arrived");
    assert.equal(server.framesOf("subscribe").length, 1);
  }));

test("a subscribe waiting for its confirmation fails when the client closes", () =>
  withServer(async (server, makeClient) => {
    const client = makeClient();
    const pending = client.subscribe("never-confirmed");
    await (await server.connection(1)).recvAction("subscribe");
    await client.close();
    await assert.rejects(within(pending), ClientClosedError);
  }));
