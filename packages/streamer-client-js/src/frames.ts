/**
 * The wire protocol's frames (docs/protocol.md), as TypeScript types and as a parser.
 *
 * The pydantic models in `streamer_core.protocol` are the single source of the protocol. They
 * are exported as JSON Schema into `schema/protocol.schema.json`, and this package's tests
 * check both the types below and the parser's field rules against that file, so a change on
 * either side fails a test instead of surfacing on the wire.
 *
 * Frames are parsed as strictly as the Python client parses them: unknown fields, wrong JSON
 * types, non-finite numbers, lone surrogates, oversized or over-deep frames are all refused.
 * A parsed frame has every field present: a field the sender may leave out gets its default.
 */

import { newRequestId } from "./ids.js";

/** Any JSON value. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
/** A JSON object. */
export type JsonObject = { [key: string]: JsonValue };
/** An integer carried as a JSON number; the parser refuses fractions. */
export type Integer = number;

export const ERROR_CODES = [
  "VALIDATION_ERROR",
  "UNAUTHORIZED",
  "FORBIDDEN",
  "NOT_FOUND",
  "CONFLICT",
  "RATE_LIMITED",
  "TIMEOUT",
  "INTERNAL_ERROR",
  "CANCELLED",
] as const;
/** The `code` of an `error` frame. */
export type ErrorCode = (typeof ERROR_CODES)[number];

export const REQUEST_STATUSES = ["QUEUED", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED"] as const;
/** Where a request stands on the server. */
export type RequestStatus = (typeof REQUEST_STATUSES)[number];

/** Statuses that never change again. */
export const TERMINAL_STATUSES: ReadonlySet<RequestStatus> = new Set<RequestStatus>([
  "COMPLETED",
  "FAILED",
  "CANCELLED",
]);

export const MAX_FRAME_BYTES = 131072;
export const MAX_NESTING_DEPTH = 32;
export const ACTION_PATTERN = /^[a-z][a-z0-9_.-]{0,63}$/;
export const ID_PATTERN = /^[A-Za-z0-9_.:-]{1,128}$/;
export const TOPIC_PATTERN = /^[A-Za-z0-9_.:/-]{1,256}$/;

// ---------------------------------------------------------------- client frames

/** What the client sends; the client always sets `id` so that it can match the answers. */
export interface ClientFrame {
  action: string;
  id: string;
  payload: JsonObject;
  metadata?: { [key: string]: string };
}

/** The payload of `subscribe` and `unsubscribe`. */
export interface TopicPayload {
  topic: string;
}

/** The payload of `status` and `cancel`. */
export interface RequestRefPayload {
  request_id: string;
}

// ---------------------------------------------------------------- request state

/** The last progress report of a request, as a snapshot holds it. */
export interface ProgressState {
  readonly percentage: number;
  readonly message: string | null;
  readonly metadata: JsonObject;
  readonly seq: Integer;
}

/** Why a request failed, as a snapshot holds it. */
export interface ErrorInfo {
  readonly code: ErrorCode;
  readonly message: string;
  readonly details: JsonObject;
}

/** The stored state of a request, as `status` returns it. */
export interface RequestSnapshot {
  readonly request_id: string;
  readonly action: string;
  readonly status: RequestStatus;
  readonly progress: ProgressState | null;
  readonly result: JsonValue;
  readonly error: ErrorInfo | null;
  readonly created_at: Integer;
  readonly updated_at: Integer;
}

// ---------------------------------------------------------------- server frames

export interface AcknowledgmentFrame {
  readonly type: "acknowledgment";
  readonly request_id: string;
  readonly action: string;
  readonly status: RequestStatus;
}

export interface ResponseFrame {
  readonly type: "response";
  readonly request_id: string;
  readonly result: JsonValue;
}

export interface ProgressFrame {
  readonly type: "progress";
  readonly request_id: string;
  readonly percentage: number;
  readonly message: string | null;
  readonly metadata: JsonObject;
  readonly seq: Integer;
}

export interface CompleteFrame {
  readonly type: "complete";
  readonly request_id: string;
  readonly result: JsonValue;
}

export interface ErrorFrame {
  readonly type: "error";
  readonly request_id: string | null;
  readonly code: ErrorCode;
  readonly message: string;
  readonly details: JsonObject;
}

export interface EventFrame {
  readonly type: "event";
  readonly topic: string;
  readonly data: JsonValue;
  readonly id: string;
  readonly published_at: Integer;
}

export interface SubscribedFrame {
  readonly type: "subscribed";
  readonly request_id: string;
  readonly topic: string;
}

export interface UnsubscribedFrame {
  readonly type: "unsubscribed";
  readonly request_id: string;
  readonly topic: string;
}

export interface PongFrame {
  readonly type: "pong";
  readonly request_id: string;
  readonly server_time: Integer;
}

export interface StatusFrame {
  readonly type: "status";
  readonly request_id: string;
  readonly snapshot: RequestSnapshot;
}

/** Every frame the server sends, told apart by `type`. */
export type ServerFrame =
  | AcknowledgmentFrame
  | ResponseFrame
  | ProgressFrame
  | CompleteFrame
  | ErrorFrame
  | EventFrame
  | SubscribedFrame
  | UnsubscribedFrame
  | PongFrame
  | StatusFrame;

export type ServerFrameType = ServerFrame["type"];

// ---------------------------------------------------------------- field rules

/** How one field is checked; `json` is any JSON value, `object` a JSON object. */
export type FieldKind =
  | { readonly kind: "string"; readonly pattern?: RegExp }
  | { readonly kind: "integer"; readonly minimum?: number }
  | { readonly kind: "number"; readonly minimum?: number; readonly maximum?: number }
  | { readonly kind: "const"; readonly value: string }
  | { readonly kind: "enum"; readonly values: readonly string[] }
  | { readonly kind: "json" }
  | { readonly kind: "object"; readonly values?: "string" }
  | { readonly kind: "model"; readonly model: string };

/** One field of a frame: how it is checked, whether it may be null, what fills it if absent. */
export interface FieldRule {
  readonly type: FieldKind;
  readonly nullable?: boolean;
  /** Absent from the rule: the field is required. */
  readonly fill?: () => JsonValue;
}

const str: FieldRule = { type: { kind: "string" } };
const int: FieldRule = { type: { kind: "integer" } };
const json: FieldRule = { type: { kind: "json" }, fill: () => null };
const objectDefault: FieldRule = { type: { kind: "object" }, fill: () => ({}) };
const nullableText: FieldRule = { type: { kind: "string" }, nullable: true, fill: () => null };
const code: FieldRule = { type: { kind: "enum", values: ERROR_CODES } };
const status: FieldRule = { type: { kind: "enum", values: REQUEST_STATUSES } };
const percentage: FieldRule = { type: { kind: "number", minimum: 0, maximum: 100 } };
const tag = (value: string): FieldRule => ({ type: { kind: "const", value }, fill: () => value });

/**
 * The field rules of every model the client parses, by the model's name in the schema.
 *
 * Exported for the test that compares them with the committed JSON Schema; not part of the
 * supported API.
 */
export const MODELS: { readonly [model: string]: { readonly [field: string]: FieldRule } } = {
  ProgressState: {
    percentage,
    message: nullableText,
    metadata: objectDefault,
    seq: { type: { kind: "integer", minimum: 0 } },
  },
  ErrorInfo: { code, message: str, details: objectDefault },
  RequestSnapshot: {
    request_id: str,
    action: str,
    status,
    progress: { type: { kind: "model", model: "ProgressState" }, nullable: true, fill: () => null },
    result: json,
    error: { type: { kind: "model", model: "ErrorInfo" }, nullable: true, fill: () => null },
    created_at: int,
    updated_at: int,
  },
  AcknowledgmentFrame: {
    type: tag("acknowledgment"),
    request_id: str,
    action: str,
    status: { ...status, fill: () => "QUEUED" },
  },
  ResponseFrame: { type: tag("response"), request_id: str, result: json },
  ProgressFrame: {
    type: tag("progress"),
    request_id: str,
    percentage,
    message: nullableText,
    metadata: objectDefault,
    seq: { type: { kind: "integer", minimum: 1 } },
  },
  CompleteFrame: { type: tag("complete"), request_id: str, result: json },
  ErrorFrame: {
    type: tag("error"),
    request_id: nullableText,
    code,
    message: str,
    details: objectDefault,
  },
  EventFrame: {
    type: tag("event"),
    topic: str,
    data: json,
    // The server always sends both; the Python models make them up when absent, and so
    // does this parser.
    id: { ...str, fill: () => newRequestId() },
    published_at: { ...int, fill: () => Date.now() },
  },
  SubscribedFrame: { type: tag("subscribed"), request_id: str, topic: str },
  UnsubscribedFrame: { type: tag("unsubscribed"), request_id: str, topic: str },
  PongFrame: { type: tag("pong"), request_id: str, server_time: { ...int, fill: () => Date.now() } },
  StatusFrame: {
    type: tag("status"),
    request_id: str,
    snapshot: { type: { kind: "model", model: "RequestSnapshot" } },
  },
  ClientFrame: {
    action: { type: { kind: "string", pattern: ACTION_PATTERN } },
    id: { type: { kind: "string", pattern: ID_PATTERN }, fill: () => newRequestId() },
    payload: objectDefault,
    metadata: { type: { kind: "object", values: "string" }, fill: () => ({}) },
  },
  TopicPayload: { topic: { type: { kind: "string", pattern: TOPIC_PATTERN } } },
  RequestRefPayload: { request_id: { type: { kind: "string", pattern: ID_PATTERN } } },
};

/** The model of each server frame `type`. */
export const SERVER_FRAME_MODELS: { readonly [type in ServerFrameType]: string } = {
  acknowledgment: "AcknowledgmentFrame",
  response: "ResponseFrame",
  progress: "ProgressFrame",
  complete: "CompleteFrame",
  error: "ErrorFrame",
  event: "EventFrame",
  subscribed: "SubscribedFrame",
  unsubscribed: "UnsubscribedFrame",
  pong: "PongFrame",
  status: "StatusFrame",
};

// ---------------------------------------------------------------- parsing

/** A frame that breaks the protocol; `field` names the part at fault as a dotted path. */
export class FrameError extends Error {
  readonly field: string | null;

  constructor(message: string, field: string | null = null) {
    super(message);
    this.name = "FrameError";
    this.field = field;
  }
}

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });

/** The size of `text` in UTF-8 bytes, without encoding it when it is plain ASCII. */
export function utf8Length(text: string): number {
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(text)) return text.length;
  return encoder.encode(text).length;
}

function isPlainObject(value: unknown): value is { [key: string]: unknown } {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/** Whether `text` is valid Unicode: JSON escapes can smuggle in a lone surrogate. */
function wellFormed(text: string): boolean {
  for (let i = 0; i < text.length; i += 1) {
    const unit = text.charCodeAt(i);
    if (unit >= 0xd800 && unit <= 0xdbff) {
      const next = text.charCodeAt(i + 1);
      if (!(next >= 0xdc00 && next <= 0xdfff)) return false;
      i += 1;
    } else if (unit >= 0xdc00 && unit <= 0xdfff) {
      return false;
    }
  }
  return true;
}

/**
 * Check that `value` is plain JSON the peer will read back the same: finite numbers, valid
 * strings, plain objects and arrays, no deeper than the protocol allows.
 *
 * `depth` is the nesting level of `value` itself (the frame object is level 1).
 */
export function checkJson(value: unknown, path: string, depth: number): void {
  if (depth > MAX_NESTING_DEPTH) {
    throw new FrameError(`frame nests deeper than ${MAX_NESTING_DEPTH} levels`, path || null);
  }
  if (value === null || typeof value === "boolean") return;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) {
      throw new FrameError(`${path || "frame"}: NaN and Infinity are not JSON numbers`, path || null);
    }
    return;
  }
  if (typeof value === "string") {
    if (!wellFormed(value)) {
      throw new FrameError(`${path || "frame"}: text is not valid Unicode (lone surrogate)`, path || null);
    }
    return;
  }
  const at = (key: string | number): string => (path ? `${path}.${key}` : String(key));
  if (Array.isArray(value)) {
    value.forEach((item, index) => checkJson(item, at(index), depth + 1));
    return;
  }
  if (isPlainObject(value)) {
    for (const [key, item] of Object.entries(value)) {
      if (!wellFormed(key)) {
        throw new FrameError(`${at(key)}: key is not valid Unicode (lone surrogate)`, at(key));
      }
      checkJson(item, at(key), depth + 1);
    }
    return;
  }
  throw new FrameError(`${path || "frame"}: ${typeof value} is not a JSON value`, path || null);
}

function describe(kind: FieldKind): string {
  switch (kind.kind) {
    case "string":
      return kind.pattern ? `a string matching ${kind.pattern.source}` : "a string";
    case "integer":
      return "an integer";
    case "number":
      return "a number";
    case "const":
      return JSON.stringify(kind.value);
    case "enum":
      return `one of ${kind.values.join(", ")}`;
    case "json":
      return "a JSON value";
    case "object":
    case "model":
      return "a JSON object";
  }
}

function checkField(value: unknown, rule: FieldRule, path: string): unknown {
  if (value === null && rule.nullable) return null;
  const kind = rule.type;
  const wrong = (): FrameError => new FrameError(`${path}: must be ${describe(kind)}`, path);
  switch (kind.kind) {
    case "string":
      if (typeof value !== "string") throw wrong();
      if (kind.pattern && !kind.pattern.test(value)) throw wrong();
      return value;
    case "integer":
      if (typeof value !== "number" || !Number.isInteger(value)) throw wrong();
      if (kind.minimum !== undefined && value < kind.minimum) {
        throw new FrameError(`${path}: must be at least ${kind.minimum}`, path);
      }
      return value;
    case "number":
      if (typeof value !== "number") throw wrong();
      if (
        (kind.minimum !== undefined && value < kind.minimum) ||
        (kind.maximum !== undefined && value > kind.maximum)
      ) {
        throw new FrameError(`${path}: must be from ${kind.minimum} to ${kind.maximum}`, path);
      }
      return value;
    case "const":
      if (value !== kind.value) throw wrong();
      return value;
    case "enum":
      if (typeof value !== "string" || !kind.values.includes(value)) throw wrong();
      return value;
    case "json":
      return value;
    case "object":
      if (!isPlainObject(value)) throw wrong();
      if (kind.values === "string" && !Object.values(value).every((item) => typeof item === "string")) {
        throw new FrameError(`${path}: every value must be a string`, path);
      }
      return value;
    case "model":
      return parseModel(value, kind.model, path);
  }
}

/** Check an already decoded value against a model's rules, filling defaults; exported for tests. */
export function parseModel(value: unknown, model: string, path = ""): { [key: string]: unknown } {
  const rules = MODELS[model];
  if (rules === undefined) throw new Error(`unknown model ${model}`);
  if (!isPlainObject(value)) {
    throw new FrameError(path ? `${path}: must be a JSON object` : "frame must be a JSON object", path || null);
  }
  const at = (key: string): string => (path ? `${path}.${key}` : key);
  for (const key of Object.keys(value)) {
    if (!(key in rules)) throw new FrameError(`${at(key)}: unknown field`, at(key));
  }
  const parsed: { [key: string]: unknown } = {};
  for (const [key, rule] of Object.entries(rules)) {
    if (Object.prototype.hasOwnProperty.call(value, key)) {
      parsed[key] = checkField(value[key], rule, at(key));
    } else if (rule.fill !== undefined) {
      parsed[key] = rule.fill();
    } else {
      throw new FrameError(`${at(key)}: required field missing`, at(key));
    }
  }
  return parsed;
}

/** Decode one WebSocket message from the server into a frame, or throw `FrameError`. */
export function parseServerFrame(data: string | ArrayBuffer | ArrayBufferView): ServerFrame {
  let text: string;
  if (typeof data === "string") {
    text = data;
  } else {
    const bytes =
      data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (bytes.byteLength > MAX_FRAME_BYTES) {
      throw new FrameError(`frame is ${bytes.byteLength} bytes, over the limit of ${MAX_FRAME_BYTES} bytes`);
    }
    try {
      text = strictDecoder.decode(bytes);
    } catch {
      throw new FrameError("frame is not valid UTF-8");
    }
  }
  const size = utf8Length(text);
  if (size > MAX_FRAME_BYTES) {
    throw new FrameError(`frame is ${size} bytes, over the limit of ${MAX_FRAME_BYTES} bytes`);
  }
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw new FrameError(`frame is not valid JSON: ${(error as Error).message}`);
  }
  if (!isPlainObject(document)) throw new FrameError("frame must be a JSON object");
  // JSON.parse turns an overflowing number such as 1e400 into Infinity: refused here.
  checkJson(document, "", 1);
  const type = document["type"];
  if (type === undefined) throw new FrameError("type: missing; every server frame names its type", "type");
  const model = typeof type === "string" ? SERVER_FRAME_MODELS[type as ServerFrameType] : undefined;
  if (model === undefined || !Object.prototype.hasOwnProperty.call(SERVER_FRAME_MODELS, type as string)) {
    throw new FrameError(`type: unknown frame type ${JSON.stringify(type)}`, "type");
  }
  return parseModel(document, model) as unknown as ServerFrame;
}

// ---------------------------------------------------------------- encoding

/** Build and serialize a client frame, or throw `FrameError` saying what is wrong with it. */
export function encodeClientFrame(frame: ClientFrame): string {
  if (!ACTION_PATTERN.test(frame.action)) {
    throw new FrameError(`action: must match ${ACTION_PATTERN.source}`, "action");
  }
  if (!ID_PATTERN.test(frame.id)) throw new FrameError(`id: must match ${ID_PATTERN.source}`, "id");
  if (!isPlainObject(frame.payload)) throw new FrameError("payload: must be a JSON object", "payload");
  checkJson(frame.payload, "payload", 2);
  const wire: { [key: string]: unknown } = { action: frame.action, id: frame.id, payload: frame.payload };
  if (frame.metadata !== undefined && Object.keys(frame.metadata).length > 0) {
    if (!isPlainObject(frame.metadata)) throw new FrameError("metadata: must be a JSON object", "metadata");
    for (const [key, value] of Object.entries(frame.metadata)) {
      if (typeof value !== "string") throw new FrameError(`metadata.${key}: must be a string`, `metadata.${key}`);
    }
    checkJson(frame.metadata, "metadata", 2);
    wire["metadata"] = frame.metadata;
  }
  // `id` before `payload`: the server can then name the request even in the error about an
  // oversized frame (it reads the id from the first 4 KiB).
  const text = JSON.stringify(wire);
  const size = utf8Length(text);
  if (size > MAX_FRAME_BYTES) {
    throw new FrameError(`frame is ${size} bytes, over the limit of ${MAX_FRAME_BYTES} bytes`);
  }
  return text;
}
