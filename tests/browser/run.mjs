// Drives headless Chromium against a running `streamer dev` stack with its console, for
// tests/e2e/test_e2e_browser.py, which starts the stack and reads what this prints: one JSON
// line per step, `{"step": "done"}` at the end, or `{"step": "failed", ...}` and exit code 1.
//
// Two pages: the application page in page/, served with the built client (dist/) by a small
// HTTP server of this script on loopback, as a developer's own page would be; and the
// console, whose buttons and forms are used as a developer would use them.
//
// Environment: STREAMER_CONSOLE_URL, STREAMER_URL, STREAMER_TOKEN (a user with reports:write),
// STREAMER_FORGED_TOKEN, STREAMER_USER, STREAMER_TENANT, STREAMER_CLIENT_DIST, SCREENSHOT_DIR;
// CHROMIUM (optional).

import { readFile } from "node:fs/promises";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const env = process.env;
const consoleUrl = env.STREAMER_CONSOLE_URL;
const dist = path.resolve(env.STREAMER_CLIENT_DIST);
const user = env.STREAMER_USER;
const tenant = env.STREAMER_TENANT;
const shots = env.SCREENSHOT_DIR;
// Bounds a wait that would otherwise hang; nothing here measures durations.
const WAIT = 20_000;

// As the machine notes run Chromium headless as root: without the background-networking
// flags it tries to reach Google's hosts, which a closed network refuses.
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const say = (step, details = {}) => process.stdout.write(`${JSON.stringify({ step, ...details })}\n`);

// The application's own web server: page/ at the root, the built client under /client/.
async function servePage() {
  const server = http.createServer(async (request, response) => {
    const url = new URL(request.url, "http://page");
    const file = url.pathname === "/" ? path.join(here, "page", "app.html")
      : url.pathname.startsWith("/client/") ? path.join(dist, url.pathname.slice("/client/".length))
      : path.join(here, "page", url.pathname.slice(1));
    const inside = file.startsWith(path.join(here, "page") + path.sep) || file.startsWith(dist + path.sep);
    try {
      if (!inside) throw new Error("outside");
      const body = await readFile(file);
      const type = file.endsWith(".html") ? "text/html" : file.endsWith(".js") ? "text/javascript" : "application/json";
      response.writeHead(200, { "Content-Type": `${type}; charset=utf-8` }).end(body);
    } catch {
      response.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return server;
}

async function appPage(browser, origin, token) {
  const context = await browser.newContext({ viewport: { width: 900, height: 900 } });
  await context.addInitScript((config) => {
    window.STREAMER_TEST = config;
  }, { url: env.STREAMER_URL, token });
  const page = await context.newPage();
  page.on("pageerror", (error) => say("pageerror", { page: "app", message: error.message }));
  page.on("console", (message) => {
    if (message.type() === "error") say("page-console", { page: "app", text: message.text() });
  });
  await page.goto(`${origin}/`);
  return page;
}

async function text(locator) {
  return (await locator.textContent({ timeout: WAIT })) ?? "";
}

const pageServer = await servePage();
const pageOrigin = `http://127.0.0.1:${pageServer.address().port}`;
const browser = await chromium.launch({
  executablePath: env.CHROMIUM ?? "/usr/bin/chromium",
  args: CHROMIUM_ARGS,
  headless: true,
});
let failed = false;
try {
  const consoleContext = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
  const consolePage = await consoleContext.newPage();
  consolePage.on("pageerror", (error) => say("pageerror", { page: "console", message: error.message }));
  await consolePage.goto(consoleUrl);
  await consolePage.locator('#live[data-state="live"]').waitFor({ timeout: WAIT });
  say("console-live");

  const page = await appPage(browser, pageOrigin, env.STREAMER_TOKEN);
  await page.click("#connect");
  await page.locator('#state[data-state="connected"]').waitFor({ timeout: WAIT });
  say("connected");

  await page.click("#echo");
  await page.locator("#echo-result:not(:empty)").waitFor({ timeout: WAIT });
  say("echo", { result: JSON.parse(await text(page.locator("#echo-result"))) });

  await page.click("#report");
  await page.locator("#report-status[data-status]").waitFor({ timeout: WAIT });
  const jobId = await page.locator("#report-status").getAttribute("data-job-id");
  say("job", {
    id: jobId,
    status: await page.locator("#report-status").getAttribute("data-status"),
    updates: (await text(page.locator("#report-updates"))).split(" ").filter(Boolean),
    result: JSON.parse(await text(page.locator("#report-result"))),
  });

  await page.click("#subscribe");
  await page.locator('#subscription[data-subscribed="true"]').waitFor({ timeout: WAIT });
  say("subscribed");

  // A server-side publish, from the console's form.
  const publish = async (n) => {
    const form = consolePage.locator("#publish-form");
    await form.locator('input[name="tenant"]').fill(tenant);
    await form.locator('input[name="topic"]').fill("news");
    await form.locator('textarea[name="data"]').fill(JSON.stringify({ n }));
    await consolePage.locator("#publish-outcome").evaluate((el) => (el.textContent = ""));
    await form.locator('button[type="submit"]').click();
    await consolePage.locator("#publish-outcome.good").waitFor({ timeout: WAIT });
    return text(consolePage.locator("#publish-outcome"));
  };
  say("published", { n: 1, outcome: await publish(1) });
  await page.locator('#events li[data-n="1"]').waitFor({ timeout: WAIT });
  say("event", { n: 1 });

  // The console's close button: the management API's DELETE drops the page's socket.
  const openRow = consolePage.locator(`#connections .conn[data-user="${user}"][data-open="true"]`);
  const before = await openRow.getAttribute("data-connection-id", { timeout: WAIT });
  await openRow.locator("button.close").click({ timeout: WAIT });
  await page.locator('#subscription[data-resubscribed="true"]').waitFor({ timeout: WAIT });
  await page.locator('#state[data-state="connected"]').waitFor({ timeout: WAIT });
  say("resubscribed", { states: (await text(page.locator("#states"))).split(" → ") });
  say("published", { n: 2, outcome: await publish(2) });
  await page.locator('#events li[data-n="2"]').waitFor({ timeout: WAIT });
  say("event", { n: 2 });

  // What the console shows of all that.
  await consolePage.locator(`#connections .conn[data-user="${user}"][data-open="false"]`).waitFor({ timeout: WAIT });
  const after = await openRow.getAttribute("data-connection-id", { timeout: WAIT });
  const closedNote = await text(consolePage.locator(`#connections .conn[data-connection-id="${before}"] .closed-note`));
  const job = consolePage.locator(`#jobs .job[data-request-id="${jobId}"]`);
  await consolePage.locator(`#jobs .job[data-request-id="${jobId}"][data-status="COMPLETED"]`).waitFor({ timeout: WAIT });
  await consolePage.locator('#invocations .inv[data-function="processor"]').first().waitFor({ timeout: WAIT });
  const topic = consolePage.locator(`#topics .topic[data-tenant="${tenant}"][data-topic="news"] .count`);
  await consolePage.locator(`#topics .topic[data-tenant="${tenant}"][data-topic="news"]`).waitFor({ timeout: WAIT });
  const invocations = await consolePage.locator("#invocations .inv").evaluateAll((rows) =>
    rows.map((row) => ({ function: row.dataset.function, route: row.dataset.route, tone: row.dataset.tone })),
  );
  say("console", {
    connection_before: before,
    connection_after: after,
    closed_note: closedNote,
    job_text: await text(job),
    topic_subscribers: await text(topic),
    invocations,
  });
  await page.screenshot({ path: path.join(shots, "app-page.png"), fullPage: true });

  // A forged token: refused at the handshake; the page says so, the console shows why.
  const forged = await appPage(browser, pageOrigin, env.STREAMER_FORGED_TOKEN);
  await forged.click("#connect");
  await forged.locator("#notice[data-error]").waitFor({ timeout: WAIT });
  const refusedRow = consolePage.locator("#refused .refused-row").first();
  await refusedRow.waitFor({ timeout: WAIT });
  say("forged", {
    error: await forged.locator("#notice").getAttribute("data-error"),
    notice: await text(forged.locator("#notice")),
    console_refused: await text(refusedRow),
  });
  await forged.screenshot({ path: path.join(shots, "forged-token.png"), fullPage: true });

  // The console's own composer, on the same client.
  const composer = consolePage.locator("#composer-card");
  await composer.locator('input[name="user"]').fill("composer-user");
  await composer.locator('#connect-form input[name="tenant"]').fill(tenant);
  await composer.locator("#connect-button").click();
  await consolePage.locator('#composer-state[data-state="connected"]').waitFor({ timeout: WAIT });
  await composer.locator('input[name="action"]').fill("echo");
  await composer.locator('textarea[name="payload"]').fill('{"from": "the composer"}');
  await composer.locator("#send-button").click();
  const reply = consolePage.locator('#replies .reply[data-label="result"]').first();
  await reply.waitFor({ timeout: WAIT });
  say("composer", { reply: await text(reply.locator(".body")) });

  await consolePage.screenshot({ path: path.join(shots, "console.png"), fullPage: true });
  say("screenshots", { dir: shots });
} catch (error) {
  failed = true;
  say("failed", { error: error?.name, message: String(error?.message ?? error) });
} finally {
  await browser.close();
  pageServer.close();
}
say("done");
process.exitCode = failed ? 1 : 0;
