// Streamer console: the local stack at work, live.
//
// State arrives as server-sent events from /_console/api/events (a snapshot, then only what
// changed); nothing is polled. The composer connects with the TypeScript client as built in
// this checkout (packages/streamer-client-js/dist, served under /_console/client/). Every
// value from the server is written with textContent, never parsed as HTML.

const API = "/_console/api";
const MAX_INVOCATIONS = 300;
const MAX_JOBS = 100;
const MAX_CLOSED = 20;
const MAX_REPLIES = 200;
const SHOWN_REFUSED = 5;
const FUNCTION_CLASSES = new Set(["connect", "router", "processor", "disconnect"]);
const CLOSE_CODES = { 1000: "normal closure", 1001: "going away", 1005: "no status", 1006: "connection lost" };

const state = {
  stack: null,
  invocations: new Map(),
  connections: new Map(),
  jobs: new Map(),
  refused: [],
  topics: [],
};
const view = {
  expanded: new Set(),
  collapsed: new Set(),
  details: new Map(),
  failuresOnly: false,
  fn: "",
};
const composer = { client: null, subscriptions: new Map(), module: null };

// -- small helpers -------------------------------------------------------------------------
function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const $ = (id) => document.getElementById(id);
const pad = (n, width = 2) => String(n).padStart(width, "0");

function clock(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function span(ms) {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m ${pad(seconds % 60)}s`;
  return `${Math.floor(minutes / 60)}h ${pad(minutes % 60)}m`;
}

function shortId(id) {
  return id && id.length > 10 ? `${id.slice(0, 8)}…` : id ?? "";
}

function colorOf(text) {
  let hash = 0;
  for (const ch of text ?? "?") hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${hash % 360} 55% 45%)`;
}

function compactJson(text) {
  if (text === null || text === undefined) return "";
  try {
    return JSON.stringify(JSON.parse(text));
  } catch {
    return String(text);
  }
}

function toast(message, bad = false) {
  const el = $("toast");
  el.textContent = message;
  el.classList.toggle("bad", bad);
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (el.hidden = true), 5000);
}

async function post(path, body) {
  const response = await fetch(`${API}/${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error ?? `${response.status} ${response.statusText}`);
  return data;
}

// -- the live stream -----------------------------------------------------------------------
function setLive(mode) {
  const live = $("live");
  live.dataset.state = mode;
  live.querySelector(".label").textContent = mode === "live" ? "live" : "reconnecting…";
}

function upsert(map, items, key, limit) {
  for (const item of items ?? []) map.set(item[key], item);
  while (limit !== undefined && map.size > limit) map.delete(map.keys().next().value);
}

function reset(snapshot) {
  state.invocations.clear();
  state.connections.clear();
  state.jobs.clear();
  apply(snapshot);
}

function apply(update) {
  upsert(state.invocations, update.invocations, "id", MAX_INVOCATIONS);
  upsert(state.connections, update.connections, "id");
  upsert(state.jobs, update.jobs, "key", MAX_JOBS);
  if (update.refused) state.refused = update.refused;
  if (update.topics) state.topics = update.topics;
  const closed = [...state.connections.values()].filter((c) => c.closed_at !== null);
  closed.sort((a, b) => a.closed_at - b.closed_at);
  for (const old of closed.slice(0, Math.max(0, closed.length - MAX_CLOSED))) state.connections.delete(old.id);
}

function openStream() {
  const source = new EventSource(`${API}/events`);
  source.addEventListener("snapshot", (event) => {
    const data = JSON.parse(event.data);
    const first = state.stack === null;
    state.stack = data.stack;
    reset(data.state);
    setLive("live");
    if (first) prepareComposer();
    render();
  });
  source.addEventListener("update", (event) => {
    apply(JSON.parse(event.data));
    render();
  });
  // EventSource reconnects by itself and the server starts it again with a snapshot.
  source.addEventListener("error", () => setLive("down"));
}

// -- drawing -------------------------------------------------------------------------------
let drawing = false;
function render() {
  if (drawing) return;
  drawing = true;
  requestAnimationFrame(() => {
    drawing = false;
    draw();
  });
}

function draw() {
  if (state.stack === null) return;
  drawFacts();
  drawTiles();
  drawConnections();
  drawJobs();
  drawInvocations();
  drawTopics();
  tick();
}

function drawFacts() {
  const s = state.stack;
  const fact = (label, value, title) => h("span", { class: "fact", title: title ?? value }, h("b", {}, label), value);
  $("stack-facts").replaceChildren(
    fact("stage", s.stage),
    fact("WebSocket", s.ws_url),
    fact("functions", s.functions),
    fact("app", s.app),
  );
}

function drawTiles() {
  const invocations = [...state.invocations.values()];
  const failures = invocations.filter(isFailure).length;
  const open = [...state.connections.values()].filter((c) => c.closed_at === null).length;
  const running = [...state.jobs.values()].filter((j) => j.status === "QUEUED" || j.status === "PROCESSING").length;
  const subscribers = state.topics.reduce((sum, t) => sum + t.subscribers, 0);
  const tile = (id, value, label, bad = false) =>
    h("div", { class: `tile${bad ? " bad" : ""}`, dataset: { tile: id } }, h("span", { class: "value" }, value), h("span", { class: "label" }, label));
  $("tiles").replaceChildren(
    tile("connections", open, open === 1 ? "open connection" : "open connections"),
    tile("invocations", invocations.length, "recent invocations"),
    tile("failures", failures, "failed or refused", failures > 0),
    tile("jobs", running, running === 1 ? "job running" : "jobs running"),
    tile("topics", state.topics.length, `topics · ${subscribers} subscriber${subscribers === 1 ? "" : "s"}`),
  );
}

function drawConnections() {
  const all = [...state.connections.values()];
  const open = all.filter((c) => c.closed_at === null).sort((a, b) => b.opened_at - a.opened_at);
  const closed = all.filter((c) => c.closed_at !== null).sort((a, b) => b.closed_at - a.closed_at);
  const rows = [...open, ...closed.slice(0, 6)].map(connectionRow);
  $("connections").replaceChildren(...(rows.length ? rows : [h("div", { class: "empty" }, "No connections yet: connect a client, or use the composer.")]));
  const refused = state.refused.slice(0, SHOWN_REFUSED).map((r) =>
    h(
      "div",
      { class: "refused-row", dataset: { status: r.status } },
      h("span", { class: "status" }, `✕ ${r.status} ${r.message}`),
      h("span", {}, `$connect refused${r.reason ? `: ${r.reason}` : ""}`),
      h("span", { class: "hint" }, `from ${r.source_ip}`),
      h("span", { class: "hint", "data-ago": r.at }),
    ),
  );
  $("refused").replaceChildren(...refused);
}

function connectionRow(c) {
  const closed = c.closed_at !== null;
  const user = c.user ?? "unknown user";
  return h(
    "div",
    { class: `conn${closed ? " closed" : ""}`, dataset: { connectionId: c.id, user: c.user ?? "", open: !closed } },
    h("div", { class: "avatar", style: `background:${colorOf(user)}` }, (user.match(/[a-z0-9]/gi) ?? ["?"]).slice(0, 2).join("")),
    h(
      "div",
      { class: "who" },
      h("div", { class: "name", title: user }, user),
      h(
        "div",
        { class: "sub" },
        h("span", { class: "chip tenant", title: "tenant" }, c.tenant ?? "?"),
        ...c.permissions.map((p) => h("span", { class: "chip", title: "permission" }, p)),
        h("span", { class: "mono", title: `connection ${c.id}` }, c.id),
      ),
    ),
    h(
      "div",
      { class: "counts", title: "messages received from the client / sent to it" },
      h("span", {}, "in ", h("b", {}, c.messages_in)),
      h("span", {}, "out ", h("b", {}, c.messages_out)),
      closed ? null : h("span", { "data-since": c.opened_at, title: `connected at ${clock(c.opened_at)}` }),
    ),
    closed
      ? h("span", { class: "closed-note", title: c.close_reason ?? "" }, `closed ${c.close_code} · ${c.close_reason || CLOSE_CODES[c.close_code] || "no reason given"}`)
      : h(
          "button",
          { class: "danger close", type: "button", "aria-label": `Close the connection of ${user}`, onclick: (e) => closeConnection(c.id, e.currentTarget) },
          "Close",
        ),
  );
}

async function closeConnection(id, button) {
  button.disabled = true;
  try {
    const response = await fetch(state.stack.management_path + encodeURIComponent(id), {
      method: "DELETE",
      // The management API only checks that the header is there (AWS signs it).
      headers: { Authorization: "streamer-console" },
    });
    if (!response.ok && response.status !== 410) throw new Error(`${response.status} ${response.statusText}`);
    toast(`Closed ${id}: its client should reconnect now.`);
  } catch (error) {
    button.disabled = false;
    toast(`Could not close ${id}: ${error.message}`, true);
  }
}

function drawJobs() {
  const jobs = [...state.jobs.values()].sort((a, b) => b.created_at - a.created_at);
  const rows = jobs.map((j) => {
    const pct = Math.round(j.percentage);
    const failed = j.status === "FAILED" || j.status === "CANCELLED";
    return h(
      "div",
      { class: "job", dataset: { requestId: j.request_id, status: j.status } },
      h(
        "div",
        { class: "job-top" },
        h("span", { class: "action" }, j.action ?? "job"),
        h("span", { class: "mono", title: j.request_id }, shortId(j.request_id)),
        h("span", { class: "owner" }, `${j.user ?? "?"} @ ${j.tenant ?? "?"}`),
        h("span", { class: `pill ${j.status}` }, j.status),
      ),
      h("div", { class: "bar", role: "progressbar", "aria-valuenow": pct, "aria-valuemin": 0, "aria-valuemax": 100 }, h("div", { class: "fill", style: `width:${failed ? Math.max(pct, 4) : pct}%` })),
      h(
        "div",
        { class: "job-bottom" },
        h("span", {}, j.message ?? (j.status === "QUEUED" ? "waiting in the queue" : "")),
        h("span", { class: "pct" }, `${pct}%`),
      ),
      j.error ? h("div", { class: "failure" }, `${j.error.code}: ${j.error.message}`) : null,
      j.result !== null && j.status === "COMPLETED" ? h("div", { class: "result", title: "result" }, compactJson(j.result)) : null,
    );
  });
  $("jobs").replaceChildren(...(rows.length ? rows : [h("div", { class: "empty" }, "No jobs yet: submit an asynchronous action (generate_report).")]));
}

// How an invocation went, at a glance: "bad" ones are red, "warn" (a client's request
// refused, e.g. FORBIDDEN) amber.
function verdict(i) {
  if (i.outcome === "running") return { label: "running", tone: "running" };
  if (i.outcome === "error") return { label: i.error?.type ?? "error", tone: "bad" };
  if (i.outcome === "refused") return { label: `refused ${i.status ?? ""}`.trim(), tone: "bad" };
  if (i.errors_logged > 0) return { label: "error logged", tone: "bad" };
  if (i.reply_error) return { label: i.reply_error.code, tone: i.reply_error.code === "INTERNAL_ERROR" ? "bad" : "warn" };
  return { label: "ok", tone: "ok" };
}

function isFailure(i) {
  return verdict(i).tone === "bad";
}

function problemOf(i) {
  if (i.error) return `${i.error.type}: ${i.error.message}`;
  const logged = i.logs.find((entry) => entry.level === "ERROR" || entry.level === "CRITICAL");
  if (logged) {
    const exception = logged.extra?.exception;
    const last = typeof exception === "string" ? exception.trim().split("\n").pop() : null;
    return last ? `${logged.text}: ${last}` : logged.text;
  }
  if (i.reply_error) return `answered ${i.reply_error.code}: ${i.reply_error.message}`;
  return null;
}

function drawInvocations() {
  const select = $("function-filter");
  const names = [...new Set([...state.invocations.values()].map((i) => i.function))].sort();
  const present = [...select.options].map((o) => o.value).filter(Boolean);
  if (names.join() !== present.join()) {
    select.replaceChildren(h("option", { value: "" }, "All functions"), ...names.map((n) => h("option", { value: n }, n)));
    select.value = names.includes(view.fn) ? view.fn : "";
  }
  const shown = [...state.invocations.values()]
    .filter((i) => (!view.failuresOnly || isFailure(i)) && (!view.fn || i.function === view.fn))
    .sort((a, b) => b.id - a.id);
  const rows = shown.map(invocationRow);
  $("invocations").replaceChildren(
    ...(rows.length ? rows : [h("div", { class: "empty" }, view.failuresOnly ? "No failures. Good." : "No invocations yet.")]),
  );
}

function isOpen(i) {
  if (view.expanded.has(i.id)) return true;
  return isFailure(i) && !view.collapsed.has(i.id);
}

function toggle(i) {
  if (isOpen(i)) {
    view.expanded.delete(i.id);
    view.collapsed.add(i.id);
  } else {
    view.collapsed.delete(i.id);
    view.expanded.add(i.id);
  }
  render();
}

function invocationRow(i) {
  const fnClass = FUNCTION_CLASSES.has(i.function) ? i.function : "other";
  let key = i.route || "(no route)";
  let more = "";
  if (i.kind === "authorizer") more = "authorizer";
  else if (i.action && i.action !== i.route) more = i.action;
  if (i.request_ids.length) more = `${more} ${i.request_ids.map(shortId).join(", ")}`.trim();
  const { label, tone } = verdict(i);
  const problem = problemOf(i);
  const open = isOpen(i);
  return h(
    "div",
    { class: "inv", dataset: { id: i.id, function: i.function, outcome: i.outcome, tone, route: i.route } },
    h(
      "div",
      { class: "inv-head", role: "button", tabindex: 0, "aria-expanded": open, onclick: () => toggle(i), onkeydown: (e) => (e.key === "Enter" || e.key === " ") && toggle(i) },
      h("span", { class: "time" }, clock(i.started_at)),
      h("span", { class: `fn ${fnClass}` }, i.function),
      h("span", { class: "route" }, h("span", { class: "key" }, key), more ? h("span", { class: "more" }, more) : null),
      h("span", { class: "lines", title: "log lines of this invocation" }, `${open ? "▾" : "▸"} ${i.logs.length + i.logs_dropped}`),
      h("span", { class: "duration" }, i.duration_ms === null ? "…" : `${i.duration_ms} ms`),
      h("span", { class: `pill ${tone}` }, label),
    ),
    problem ? h("div", { class: `error-line ${tone}` }, problem) : null,
    open ? logsOf(i) : null,
  );
}

function logsOf(i) {
  const lines = i.logs.map((entry) => {
    const { exception, ...extra } = entry.extra ?? {};
    const pairs = Object.entries(extra).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`);
    return h(
      "div",
      { class: `log ${entry.level}` },
      h("span", { class: "lvl" }, entry.level || "·"),
      h(
        "span",
        { class: "msg" },
        entry.text,
        pairs.length ? h("span", { class: "extra" }, ` ${pairs.join(" ")}`) : null,
        typeof exception === "string" ? h("span", { class: "trace" }, `\n${exception}`) : null,
      ),
    );
  });
  const detail = view.details.get(i.id);
  return h(
    "div",
    { class: "logs" },
    lines.length ? lines : h("div", { class: "none" }, "No log lines from this invocation (POWERTOOLS_LOG_LEVEL decides what the functions log)."),
    i.logs_dropped ? h("div", { class: "none" }, `… and ${i.logs_dropped} more lines`) : null,
    detail
      ? h("div", { class: "detail" }, `event:\n${detail.event}\n\nresult:\n${detail.result ?? "(none)"}`)
      : h("button", { class: "detail-link", type: "button", onclick: () => loadDetail(i.id) }, "Show the event and the result"),
  );
}

async function loadDetail(id) {
  const response = await fetch(`${API}/invocations/${id}`);
  if (!response.ok) return toast("That invocation is no longer kept.", true);
  view.details.set(id, await response.json());
  render();
}

function drawTopics() {
  const rows = state.topics.map((t) =>
    h(
      "div",
      { class: "topic", dataset: { tenant: t.tenant, topic: t.topic } },
      h("span", { class: "chip tenant" }, t.tenant),
      h("span", { class: "name", title: t.topic }, t.topic),
      h("span", { class: "count", title: "subscribers" }, t.subscribers),
      h(
        "button",
        { class: "linkish", type: "button", onclick: () => fillPublish(t.tenant, t.topic) },
        "publish…",
      ),
    ),
  );
  $("topics").replaceChildren(...(rows.length ? rows : [h("div", { class: "empty" }, "No subscriptions yet.")]));
}

function fillPublish(tenant, topic) {
  const form = $("publish-form");
  form.elements.tenant.value = tenant;
  form.elements.topic.value = topic;
  form.elements.data.focus();
}

function tick() {
  const now = Date.now();
  for (const el of document.querySelectorAll("[data-since]")) el.textContent = `for ${span(now - Number(el.dataset.since))}`;
  for (const el of document.querySelectorAll("[data-ago]")) el.textContent = `${span(now - Number(el.dataset.ago))} ago`;
}

// -- server-side publish ---------------------------------------------------------------------
$("publish-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const outcome = $("publish-outcome");
  let data;
  try {
    data = form.elements.data.value.trim() ? JSON.parse(form.elements.data.value) : null;
  } catch (error) {
    outcome.className = "outcome bad";
    outcome.textContent = `The data is not JSON: ${error.message}`;
    return;
  }
  outcome.className = "outcome";
  outcome.textContent = "publishing…";
  try {
    const report = await post("publish", { tenant: form.elements.tenant.value, topic: form.elements.topic.value, data });
    outcome.className = `outcome ${report.failed ? "bad" : "good"}`;
    const parts = [`delivered to ${report.delivered}`];
    if (report.gone) parts.push(`${report.gone} gone`);
    if (report.failed) parts.push(`${report.failed} failed`);
    outcome.textContent = parts.join(", ");
  } catch (error) {
    outcome.className = "outcome bad";
    outcome.textContent = error.message;
  }
});

// -- the composer -----------------------------------------------------------------------------
function setComposerState(text, mode = text) {
  const pill = $("composer-state");
  pill.dataset.state = mode;
  pill.textContent = text;
  $("connect-button").textContent = composer.client ? "Disconnect" : "Connect";
  const connected = composer.client !== null;
  $("send-button").disabled = !connected;
  $("subscribe-button").disabled = !connected;
}

function prepareComposer() {
  const client = state.stack.client;
  setComposerState("not connected", "idle");
  if (client.available) return;
  const notice = $("composer-missing");
  notice.replaceChildren(
    "The composer needs the TypeScript client, built: run ",
    h("code", {}, client.build),
    " in the repository, then reload this page.",
  );
  notice.hidden = false;
  $("connect-button").disabled = true;
}

async function clientModule() {
  if (composer.module === null) composer.module = await import(state.stack.client.module);
  return composer.module;
}

function reply(direction, label, body, bad = false) {
  const box = $("replies");
  const text = typeof body === "string" ? body : JSON.stringify(body);
  box.append(
    h("div", { class: `reply${bad ? " bad" : ""}`, dataset: { label } }, h("span", { class: "dir" }, direction), h("span", {}, h("span", { class: "pill" }, label)), h("span", { class: "body" }, text)),
  );
  while (box.childElementCount > MAX_REPLIES) box.firstElementChild.remove();
  box.scrollTop = box.scrollHeight;
}

$("connect-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (composer.client !== null) {
    const client = composer.client;
    composer.client = null;
    composer.subscriptions.clear();
    drawSubscriptions();
    await client.close();
    setComposerState("not connected", "idle");
    return;
  }
  const form = event.currentTarget;
  const user = form.elements.user.value.trim();
  const tenant = form.elements.tenant.value.trim();
  const permissions = form.elements.permissions.value.split(/[\s,]+/).filter(Boolean);
  const outcome = $("connect-outcome");
  let module;
  try {
    module = await clientModule();
  } catch (error) {
    outcome.className = "outcome bad";
    outcome.textContent = `Could not load the client: ${error.message}`;
    return;
  }
  const client = new module.StreamerClient(state.stack.ws_url, {
    token: async () => (await post("token", { user, tenant, permissions })).token,
    backoffInitial: 250,
    backoffMax: 3000,
  });
  composer.client = client;
  client.on("state", (s) => {
    if (composer.client === client) setComposerState(s);
  });
  client.on("frame", (frame) => reply("←", frame.type, frame, frame.type === "error"));
  outcome.className = "outcome";
  outcome.textContent = "connecting…";
  try {
    await client.connect();
    outcome.className = "outcome good";
    outcome.textContent = `connected as ${user} @ ${tenant}`;
  } catch (error) {
    composer.client = null;
    await client.close();
    setComposerState("refused or unreachable", "failed");
    outcome.className = "outcome bad";
    outcome.textContent = `${error.name}: refused or unreachable (see Connections for a refused $connect)`;
  }
});

$("send-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const client = composer.client;
  if (client === null) return;
  const form = event.currentTarget;
  const action = form.elements.action.value.trim();
  let payload;
  try {
    payload = form.elements.payload.value.trim() ? JSON.parse(form.elements.payload.value) : {};
  } catch (error) {
    reply("!", "invalid", `The payload is not JSON: ${error.message}`, true);
    return;
  }
  reply("→", action, payload);
  try {
    const job = await client.submit(action, payload);
    const result = await job.result;
    reply("✓", "result", result);
  } catch (error) {
    reply("✕", error.code ?? error.name, error.message, true);
  }
});

$("subscribe-button").addEventListener("click", async () => {
  const client = composer.client;
  const topic = $("send-form").elements.topic.value.trim();
  if (client === null || !topic || composer.subscriptions.has(topic)) return;
  reply("→", "subscribe", topic);
  try {
    const subscription = await client.subscribe(topic);
    composer.subscriptions.set(topic, subscription);
    drawSubscriptions();
    (async () => {
      for await (const _event of subscription); // frames are shown as they arrive
    })().catch(() => {});
  } catch (error) {
    reply("✕", error.code ?? error.name, error.message, true);
  }
});

function drawSubscriptions() {
  $("subscriptions").replaceChildren(
    ...[...composer.subscriptions.entries()].map(([topic, subscription]) =>
      h(
        "span",
        { class: "chip" },
        topic,
        h(
          "button",
          {
            type: "button",
            "aria-label": `Unsubscribe from ${topic}`,
            onclick: async () => {
              composer.subscriptions.delete(topic);
              drawSubscriptions();
              await subscription.unsubscribe();
            },
          },
          "×",
        ),
      ),
    ),
  );
}

// -- filters and start -----------------------------------------------------------------------
$("failures-only").addEventListener("change", (event) => {
  view.failuresOnly = event.currentTarget.checked;
  render();
});
$("function-filter").addEventListener("change", (event) => {
  view.fn = event.currentTarget.value;
  render();
});
setInterval(tick, 1000);
setComposerState("not connected", "idle");
openStream();
