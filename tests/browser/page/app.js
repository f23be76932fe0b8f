// The page the browser test drives: an application that uses the TypeScript client as built
// (dist/, served beside this page under /client/). Everything it learns is written into the
// page, where the test (and a person looking at a screenshot) reads it.
//
// window.STREAMER_TEST = { url, token } is set by the test before the page loads.

import { StreamerClient } from "./client/index.js";

const config = window.STREAMER_TEST;
const $ = (id) => document.getElementById(id);
const states = [];
let client = null;
let reconnected = false;

function show(id, text) {
  $(id).textContent = text;
}

function connectClient() {
  client = new StreamerClient(config.url, {
    token: () => config.token,
    backoffInitial: 100,
    backoffMax: 500,
    requestTimeout: 20_000,
  });
  client.on("state", (state) => {
    states.push(state);
    if (state === "reconnecting") reconnected = true;
    $("state").dataset.state = state;
    show("state", state);
    show("states", states.join(" → "));
  });
  client.on("frame", (frame) => {
    // The topic confirmed again on a new socket: events published from now on arrive.
    if (reconnected && frame.type === "subscribed") {
      show("subscription", `resubscribed to ${frame.topic}`);
      $("subscription").dataset.resubscribed = "true";
    }
  });
  return client;
}

$("connect").addEventListener("click", async () => {
  show("notice", "");
  try {
    await connectClient().connect();
  } catch (error) {
    // A browser cannot see the handshake's HTTP status: a refused token and an unreachable
    // server look the same to it.
    $("state").dataset.state = "failed";
    show("state", "not connected");
    show("notice", `Could not connect: the server refused the token or is unreachable (${error.name}: ${error.message})`);
    $("notice").dataset.error = error.name;
    await client.close();
  }
});

$("echo").addEventListener("click", async () => {
  const result = await client.request("echo", { text: "hello from the browser" });
  show("echo-result", JSON.stringify(result));
});

$("report").addEventListener("click", async () => {
  const updates = [];
  show("report-status", "submitting");
  const job = await client.submit("generate_report", { steps: 4, title: "from the browser" });
  $("report-status").dataset.jobId = job.id;
  show("report-status", `job ${job.id} accepted`);
  for await (const update of job.progress) {
    updates.push(`${update.seq}:${update.percentage}`);
    $("report-progress").value = update.percentage;
    show("report-updates", updates.join(" "));
  }
  const result = await job.result;
  show("report-result", JSON.stringify(result));
  $("report-status").dataset.status = job.lastStatus;
  show("report-status", job.lastStatus);
});

$("subscribe").addEventListener("click", async () => {
  const subscription = await client.subscribe("news");
  show("subscription", `subscribed to ${subscription.topic}`);
  $("subscription").dataset.subscribed = "true";
  for await (const event of subscription) {
    const item = document.createElement("li");
    item.textContent = JSON.stringify(event.data);
    item.dataset.n = String(event.data?.n ?? "");
    $("events").append(item);
  }
});
