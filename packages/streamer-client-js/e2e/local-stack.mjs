// Drives the built client (dist/) against a running Streamer stack, for the end-to-end test
// in tests/e2e/test_e2e_js_client.py, which starts the stack and reads what this prints.
//
// Every step prints one JSON line on stdout. The test acts on some of them: it publishes to
// the topic after "subscribed", drops the connection through the management API after the
// first "event", and publishes again after "resubscribed".
//
// Environment: STREAMER_URL, STREAMER_TOKEN (a user with reports:write), STREAMER_FORGED_TOKEN.

import { WebSocket } from "ws";

import { StreamerClient } from "../dist/index.js";

const url = process.env.STREAMER_URL;
const token = process.env.STREAMER_TOKEN;
const forged = process.env.STREAMER_FORGED_TOKEN;

const say = (step, details = {}) => process.stdout.write(`${JSON.stringify({ step, ...details })}\n`);

// Only bounds a hang; the test itself waits with its own, longer limit.
const guard = setTimeout(() => {
  say("hung");
  process.exit(2);
}, 60_000);

const client = new StreamerClient(url, {
  WebSocket,
  token: () => token,
  backoffInitial: 50,
  backoffMax: 200,
  requestTimeout: 20_000,
});

let reconnected = false;
client.on("state", (state) => {
  say("state", { state });
  if (state === "reconnecting") reconnected = true;
});
client.on("frame", (frame) => {
  // The topic is confirmed again on the new socket: events published now reach it.
  if (reconnected && frame.type === "subscribed") say("resubscribed", { topic: frame.topic });
});

try {
  await client.connect();
  say("echo", { result: await client.request("echo", { text: "hi from node" }) });

  const job = await client.submit("generate_report", { steps: 3, title: "from js" });
  const updates = [];
  for await (const update of job.progress) updates.push({ seq: update.seq, percentage: update.percentage });
  say("job", { id: job.id, updates, result: await job.result, status: job.lastStatus });

  const seqs = [];
  const result = await client.request("generate_report", { steps: 2 }, { onProgress: (update) => seqs.push(update.seq) });
  say("request", { seqs, result });

  const subscription = await client.subscribe("news");
  say("subscribed", { topic: subscription.topic });
  for await (const event of subscription) {
    say("event", { topic: event.topic, data: event.data, id: event.id });
    if (event.data?.n === 2) break;
  }

  const refused = new StreamerClient(url, { WebSocket, token: forged });
  try {
    await refused.connect();
    say("forged", { error: null });
  } catch (error) {
    say("forged", { error: error.name, code: error.code, status: error.status ?? null, message: error.message });
  } finally {
    await refused.close();
  }
} catch (error) {
  say("failed", { error: error?.name, message: error?.message });
  process.exitCode = 1;
} finally {
  await client.close();
  clearTimeout(guard);
  say("done");
}
