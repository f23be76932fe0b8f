// The public API as TypeScript users meet it: the shipped declarations compile under `strict`
// with the browser's WebSocket and with `ws` in Node, and never fall back to `any`.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const PACKAGE = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const DIST = join(PACKAGE, "dist");

const USAGE = `
import { WebSocket as NodeWebSocket } from "ws";
import {
  StreamerClient,
  StreamerError,
  OutcomeUnknownError,
  type ConnectionState,
  type EventFrame,
  type JsonValue,
  type ProgressFrame,
  type RequestStatus,
} from ${JSON.stringify(join(DIST, "index.js"))};

async function usage(getToken: () => Promise<string>): Promise<void> {
  const inBrowser = new StreamerClient("wss://example.invalid/prod", { token: () => getToken() });
  const inNode = new StreamerClient("ws://127.0.0.1:8000/local", { WebSocket: NodeWebSocket, token: "t" });
  const stop: () => void = inNode.on("state", (state: ConnectionState) => void state);
  stop();
  inNode.on("frame", (frame) => {
    if (frame.type === "progress") {
      const seq: number = frame.seq;
      void seq;
    }
  });
  const controller = new AbortController();
  const result: JsonValue = await inBrowser.request("echo", { text: "hi" }, {
    signal: controller.signal,
    timeout: 5_000,
    onProgress: (update: ProgressFrame) => void update.percentage,
  });
  void result;
  const job = await inNode.submit("generate_report", { steps: 3 });
  for await (const update of job.progress) void update.message;
  const status: RequestStatus = await job.cancel();
  void status;
  const snapshot = await job.status({ timeout: null, signal: undefined });
  void snapshot.progress?.seq;
  void (await job.result);
  const subscription = await inNode.subscribe("news");
  for await (const event of subscription) {
    const data: JsonValue = (event as EventFrame).data;
    void data;
    break;
  }
  await subscription.unsubscribe();
  try {
    await inNode.request("charge");
  } catch (error) {
    if (error instanceof OutcomeUnknownError) void error.requestId;
    else if (error instanceof StreamerError) void error.code;
  }
  await inNode.close();
}
void usage;
`;

test("the declarations compile under strict with the browser's and ws's WebSocket", () => {
  const dir = mkdtempSync(join(tmpdir(), "streamer-types-"));
  try {
    writeFileSync(join(dir, "usage.ts"), USAGE);
    writeFileSync(
      join(dir, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          exactOptionalPropertyTypes: true,
          noEmit: true,
          target: "ES2022",
          lib: ["ES2022", "DOM", "DOM.AsyncIterable"],
          module: "NodeNext",
          moduleResolution: "NodeNext",
          typeRoots: [join(PACKAGE, "node_modules", "@types")],
          types: ["node"],
          paths: { ws: [join(PACKAGE, "node_modules", "@types", "ws")] },
        },
        files: ["usage.ts"],
      }),
    );
    let output = "";
    try {
      execFileSync(process.execPath, [join(PACKAGE, "node_modules", "typescript", "bin", "tsc"), "-p", dir], {
        encoding: "utf8",
        stdio: "pipe",
      });
    } catch (failure) {
      output = `${failure.stdout ?? ""}${failure.stderr ?? ""}`;
    }
    assert.equal(output, "", output);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("no declaration the package ships says any", () => {
  for (const name of readdirSync(DIST).filter((file) => file.endsWith(".d.ts"))) {
    const code = readFileSync(join(DIST, name), "utf8")
      .replace(/\/\*[\s\S]*?\*\//g, "")
      .replace(/\/\/.*$/gm, "")
      .replace(/"(?:[^"\\]|\\.)*"/g, '""');
    assert.doesNotMatch(code, /\bany\b/, name);
  }
});
