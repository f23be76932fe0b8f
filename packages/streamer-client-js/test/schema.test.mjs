// The client's frames against the protocol's single source: the JSON Schema exported from the
// pydantic models (schema/protocol.schema.json, kept current by a Python test).
//
// Two sides are checked, so drift anywhere fails here:
// - the parser's field rules (dist/frames.js): the same frame types, fields, required fields,
//   JSON types, bounds, patterns and defaults, and the parser really enforces them;
// - the TypeScript types the package ships (dist/*.d.ts): a file generated from the schema
//   declares each frame as the schema describes it, and `tsc` must find the package's types
//   and the schema's mutually assignable.
// Each comparison is also run against a deliberately altered schema, to prove it can fail.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import {
  ACTION_PATTERN,
  ERROR_CODES,
  FrameError,
  ID_PATTERN,
  MAX_FRAME_BYTES,
  MAX_NESTING_DEPTH,
  MODELS,
  REQUEST_STATUSES,
  SERVER_FRAME_MODELS,
  TOPIC_PATTERN,
  parseServerFrame,
} from "../dist/frames.js";

const PACKAGE = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const SCHEMA = JSON.parse(readFileSync(join(PACKAGE, "schema", "protocol.schema.json"), "utf8"));
const ENUMS = new Set(["ErrorCode", "RequestStatus"]);

const refName = (ref) => ref.replace("#/$defs/", "");
const clone = (value) => JSON.parse(JSON.stringify(value));

/** The models the client knows: every schema definition that is neither an enum nor a union. */
function modelNames(schema) {
  return Object.keys(schema.$defs).filter((name) => !ENUMS.has(name) && name !== "JsonValue" && name !== "ServerFrame");
}

/** A field's schema without its `null` alternative, and whether it had one. */
function unwrapNullable(property) {
  if (!property.anyOf) return { inner: property, nullable: false };
  const others = property.anyOf.filter((option) => option.type !== "null");
  return { inner: others.length === 1 ? others[0] : { anyOf: others }, nullable: others.length < property.anyOf.length };
}

/** Every difference between the parser's rules and `schema`, as readable lines. */
function ruleDifferences(schema) {
  const problems = [];
  const mapping = schema.$defs.ServerFrame.discriminator.mapping;
  const ours = Object.fromEntries(Object.entries(SERVER_FRAME_MODELS));
  const theirs = Object.fromEntries(Object.entries(mapping).map(([type, ref]) => [type, refName(ref)]));
  if (JSON.stringify(Object.entries(ours).sort()) !== JSON.stringify(Object.entries(theirs).sort())) {
    problems.push(`server frame types: client ${JSON.stringify(ours)}, schema ${JSON.stringify(theirs)}`);
  }
  for (const [name, values] of [
    ["ErrorCode", ERROR_CODES],
    ["RequestStatus", REQUEST_STATUSES],
  ]) {
    if (JSON.stringify([...values]) !== JSON.stringify(schema.$defs[name].enum)) problems.push(`${name}: values differ`);
  }
  const extra = schema["x-streamer"];
  if (extra.max_frame_bytes !== MAX_FRAME_BYTES) problems.push("max_frame_bytes differs");
  if (extra.max_nesting_depth !== MAX_NESTING_DEPTH) problems.push("max_nesting_depth differs");
  for (const [key, pattern] of [
    ["action", ACTION_PATTERN],
    ["id", ID_PATTERN],
    ["topic", TOPIC_PATTERN],
  ]) {
    if (extra.patterns[key] !== pattern.source) problems.push(`${key} pattern differs`);
  }
  const names = modelNames(schema);
  for (const name of Object.keys(MODELS)) if (!names.includes(name)) problems.push(`${name}: not in the schema`);
  for (const name of names) {
    const rules = MODELS[name];
    const definition = schema.$defs[name];
    if (rules === undefined) {
      problems.push(`${name}: the client has no rules for it`);
      continue;
    }
    const required = new Set(definition.required ?? []);
    const fields = Object.keys(definition.properties);
    if (JSON.stringify(Object.keys(rules)) !== JSON.stringify(fields)) {
      problems.push(`${name}: fields ${Object.keys(rules)} in the client, ${fields} in the schema`);
    }
    for (const field of fields) {
      const rule = rules[field];
      if (rule === undefined) continue;
      const at = `${name}.${field}`;
      const property = definition.properties[field];
      if (required.has(field) !== (rule.fill === undefined)) {
        problems.push(`${at}: required ${required.has(field)} in the schema, not in the client`);
      }
      if ("default" in property && rule.fill && JSON.stringify(rule.fill()) !== JSON.stringify(property.default)) {
        const ours = JSON.stringify(rule.fill());
        problems.push(`${at}: default ${JSON.stringify(property.default)} in the schema, ${ours} in the client`);
      }
      const { inner, nullable } = unwrapNullable(property);
      if (nullable !== Boolean(rule.nullable)) problems.push(`${at}: nullable ${nullable} in the schema`);
      const kind = rule.type;
      const ref = inner.$ref ? refName(inner.$ref) : null;
      const same = (() => {
        switch (kind.kind) {
          case "string":
            return (
              inner.type === "string" &&
              inner.const === undefined &&
              (inner.pattern ?? null) === (kind.pattern?.source ?? null)
            );
          case "integer":
            return inner.type === "integer" && (inner.minimum ?? null) === (kind.minimum ?? null);
          case "number":
            return inner.type === "number" && inner.minimum === kind.minimum && inner.maximum === kind.maximum;
          case "const":
            return inner.const === kind.value;
          case "enum":
            return ENUMS.has(ref) && JSON.stringify(schema.$defs[ref].enum) === JSON.stringify([...kind.values]);
          case "json":
            return ref === "JsonValue";
          case "object": {
            const values = inner.additionalProperties ?? {};
            const want = kind.values === "string" ? values.type === "string" : refName(values.$ref ?? "") === "JsonValue";
            return inner.type === "object" && want;
          }
          case "model":
            return ref === kind.model;
          default:
            return false;
        }
      })();
      if (!same) problems.push(`${at}: ${JSON.stringify(kind)} in the client, ${JSON.stringify(property)} in the schema`);
    }
  }
  return problems;
}

/** A value the schema accepts for `property` (only required fields are filled). */
function sample(schema, property) {
  const { inner } = unwrapNullable(property);
  if (inner.$ref) {
    const name = refName(inner.$ref);
    if (name === "JsonValue") return { any: ["json", 1, true, null] };
    if (ENUMS.has(name)) return schema.$defs[name].enum.at(-1);
    return minimal(schema, name);
  }
  if (inner.const !== undefined) return inner.const;
  switch (inner.type) {
    case "string":
      return "s-1";
    case "integer":
      return Math.max(inner.minimum ?? 7, 7);
    case "number":
      return 42.5;
    case "object":
      return {};
    default:
      throw new Error(`no sample for ${JSON.stringify(property)}`);
  }
}

/** A value of the wrong JSON type for `property`, or undefined where any JSON is fine. */
function wrongSample(property) {
  const { inner } = unwrapNullable(property);
  if (inner.$ref) return refName(inner.$ref) === "JsonValue" ? undefined : 17;
  if (inner.const !== undefined) return `not-${inner.const}`;
  return { string: 5, integer: 1.5, number: "5", object: [] }[inner.type];
}

/** An instance of model `name` with only its required fields. */
function minimal(schema, name) {
  const definition = schema.$defs[name];
  const value = {};
  for (const field of definition.required ?? []) value[field] = sample(schema, definition.properties[field]);
  return value;
}

test("the parser's field rules are the schema's", () => {
  assert.deepEqual(ruleDifferences(SCHEMA), []);
});

test("the rule comparison notices a schema that changed", () => {
  const changed = clone(SCHEMA);
  delete changed.$defs.ProgressFrame.properties.seq;
  changed.$defs.ErrorFrame.required.push("details");
  changed.$defs.ServerFrame.discriminator.mapping.notice = "#/$defs/NoticeFrame";
  changed.$defs.ProgressState.properties.seq.minimum = 1;
  changed.$defs.RequestStatus.enum.push("PAUSED");
  const problems = ruleDifferences(changed).join("\n");
  const expectations = [
    "ProgressFrame: fields",
    "ErrorFrame.details: required",
    "server frame types",
    "ProgressState.seq",
    "RequestStatus",
  ];
  for (const expected of expectations) {
    assert.ok(problems.includes(expected), `${expected} not reported in:\n${problems}`);
  }
});

test("every server frame type parses from its required fields and gets the schema's defaults", () => {
  for (const [type, ref] of Object.entries(SCHEMA.$defs.ServerFrame.discriminator.mapping)) {
    const name = refName(ref);
    const definition = SCHEMA.$defs[name];
    const frame = { ...minimal(SCHEMA, name), type };
    const parsed = parseServerFrame(JSON.stringify(frame));
    assertFilled(SCHEMA, name, frame, parsed);
  }
});

/** `parsed` is `sent` with every absent field of model `name` (and its inner models) filled. */
function assertFilled(schema, name, sent, parsed) {
  const definition = schema.$defs[name];
  assert.deepEqual(Object.keys(parsed).sort(), Object.keys(definition.properties).sort(), name);
  for (const [field, property] of Object.entries(definition.properties)) {
    const at = `${name}.${field}`;
    const inner = unwrapNullable(property).inner;
    const model = inner.$ref && modelNames(schema).includes(refName(inner.$ref)) ? refName(inner.$ref) : null;
    if (field in sent) {
      if (model !== null && sent[field] !== null) assertFilled(schema, model, sent[field], parsed[field]);
      else assert.deepEqual(parsed[field], sent[field], at);
    } else if ("default" in property) {
      assert.deepEqual(parsed[field], property.default, `${at} default`);
    } else {
      // No default in the schema: the model makes one up (an id, a time), as the parser does.
      assert.equal(typeof parsed[field], property.type === "integer" ? "number" : property.type, `${at} made up`);
    }
  }
}

test("every server frame is refused without a required field, with an unknown one, or with a wrong type", () => {
  for (const [type, ref] of Object.entries(SCHEMA.$defs.ServerFrame.discriminator.mapping)) {
    const name = refName(ref);
    const definition = SCHEMA.$defs[name];
    const frame = { ...minimal(SCHEMA, name), type };
    const refused = (variant, why) =>
      assert.throws(() => parseServerFrame(JSON.stringify(variant)), FrameError, `${name}: ${why}`);
    for (const field of definition.required ?? []) {
      const { [field]: _dropped, ...rest } = frame;
      refused(rest, `without ${field}`);
    }
    refused({ ...frame, unexpected: 1 }, "with an unknown field");
    for (const [field, property] of Object.entries(definition.properties)) {
      const wrong = wrongSample(property);
      if (wrong !== undefined) refused({ ...frame, [field]: wrong }, `${field} of the wrong type`);
    }
  }
});

// ---------------------------------------------------------------- the shipped types

/** The TypeScript a field's schema describes; `optional` fields keep their `?`. */
function tsType(property) {
  if (property.anyOf) return property.anyOf.map(tsType).join(" | ");
  if (property.$ref) {
    const name = refName(property.$ref);
    if (name === "JsonValue") return "JsonValue";
    if (ENUMS.has(name)) return `S_${name}`;
    return `S_${name}`;
  }
  if (property.const !== undefined) return JSON.stringify(property.const);
  switch (property.type) {
    case "null":
      return "null";
    case "string":
      return "string";
    case "integer":
    case "number":
      return "number";
    case "boolean":
      return "boolean";
    case "object": {
      const values = property.additionalProperties;
      return `{ [key: string]: ${values ? tsType(values) : "JsonValue"} }`;
    }
    default:
      return "JsonValue";
  }
}

/**
 * A TypeScript file asserting that the package's declarations are the schema's frames.
 *
 * Server frames and the models inside them are compared with every field present (the parser
 * fills defaults, so a parsed frame always has them); the frames the client sends keep the
 * schema's optional fields and must be assignable to what the server accepts.
 */
function typeCheckSource(schema) {
  const lines = [
    `import type * as P from ${JSON.stringify(join(PACKAGE, "dist", "index.js"))};`,
    "type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };",
    "type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;",
    "type Fits<A, B> = [A] extends [B] ? true : false;",
    "type Expect<T extends true> = T;",
  ];
  const sent = new Set(["ClientFrame", "TopicPayload", "RequestRefPayload"]);
  for (const name of ENUMS) {
    lines.push(`type S_${name} = ${schema.$defs[name].enum.map((value) => JSON.stringify(value)).join(" | ")};`);
    lines.push(`export type Check_${name} = Expect<Same<P.${name}, S_${name}>>;`);
  }
  for (const name of modelNames(schema)) {
    const definition = schema.$defs[name];
    const required = new Set(definition.required ?? []);
    const fields = Object.entries(definition.properties).map(([field, property]) => {
      const optional = sent.has(name) && !required.has(field);
      return `${field}${optional ? "?" : ""}: ${tsType(property)}`;
    });
    lines.push(`type S_${name} = { ${fields.join("; ")} };`);
    const relation = sent.has(name) ? "Fits" : "Same";
    lines.push(`export type Check_${name} = Expect<${relation}<P.${name}, S_${name}>>;`);
    lines.push(`export type Keys_${name} = Expect<Same<keyof P.${name}, keyof S_${name}>>;`);
  }
  const members = Object.values(schema.$defs.ServerFrame.discriminator.mapping).map((ref) => `S_${refName(ref)}`);
  lines.push(`type S_ServerFrame = ${members.join(" | ")};`);
  lines.push("export type Check_ServerFrame = Expect<Same<P.ServerFrame, S_ServerFrame>>;");
  lines.push('export type Check_ServerFrameType = Expect<Same<P.ServerFrameType, S_ServerFrame["type"]>>;');
  return `${lines.join("\n")}\n`;
}

/** Compile the generated check with the package's own TypeScript; the compiler's complaints. */
function typeCheck(schema) {
  const dir = mkdtempSync(join(tmpdir(), "streamer-schema-"));
  try {
    writeFileSync(join(dir, "check.ts"), typeCheckSource(schema));
    writeFileSync(
      join(dir, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          noEmit: true,
          target: "ES2022",
          lib: ["ES2022", "DOM"],
          module: "NodeNext",
          moduleResolution: "NodeNext",
          types: [],
          skipLibCheck: false,
        },
        files: ["check.ts"],
      }),
    );
    const source = typeCheckSource(schema).split("\n");
    try {
      execFileSync(process.execPath, [join(PACKAGE, "node_modules", "typescript", "bin", "tsc"), "-p", dir], {
        encoding: "utf8",
        stdio: "pipe",
      });
      return "";
    } catch (failure) {
      const output = `${failure.stdout ?? ""}${failure.stderr ?? ""}` || String(failure);
      // Quote the generated line of each complaint, so a failure names the frame at fault.
      return output.replace(/check\.ts\((\d+),\d+\)[^\n]*/g, (line, number) => `${line}\n    ${source[number - 1]}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("the TypeScript frame types the package ships are the schema's", () => {
  const complaints = typeCheck(SCHEMA);
  assert.equal(complaints, "", complaints);
});

test("the type comparison notices a schema that changed", () => {
  const changed = clone(SCHEMA);
  changed.$defs.ProgressFrame.properties.seq = { type: "string" };
  changed.$defs.EventFrame.properties.source = { type: "string" };
  changed.$defs.ErrorInfo.properties.message = { anyOf: [{ type: "string" }, { type: "null" }] };
  changed.$defs.ErrorCode.enum.push("GONE");
  const complaints = typeCheck(changed);
  for (const name of ["Check_ProgressFrame", "Keys_EventFrame", "Check_ErrorInfo", "Check_ErrorCode"]) {
    assert.ok(complaints.includes(name), `${name} not flagged in:\n${complaints}`);
  }
});
