/**
 * Errors the client rejects with.
 *
 * Every failure a caller can see is a `StreamerError`, so one `instanceof` check is enough for
 * code that does not care why, and every one has a `code`: the wire `ErrorCode` for errors the
 * server reported, or a local code for failures on this side. Each wire code has a class of
 * its own, so callers branch with `instanceof NotFoundError` rather than comparing strings.
 * The classes mirror the Python client's exceptions (`ConnectionFailed` there is
 * `ConnectionFailedError` here, and so on).
 */

import type { ErrorCode, JsonObject } from "./frames.js";

/** Codes of failures detected on the client's side of the connection. */
export type LocalErrorCode =
  | "CONNECTION_FAILED"
  | "AUTHENTICATION_FAILED"
  | "OUTCOME_UNKNOWN"
  | "CLIENT_CLOSED"
  | "REQUEST_TIMEOUT"
  | "INVALID_REQUEST";

/** Base class of every error this package rejects with on purpose. */
export class StreamerError extends Error {
  readonly code: ErrorCode | LocalErrorCode;

  constructor(message: string, code: ErrorCode | LocalErrorCode) {
    super(message);
    this.name = "StreamerError";
    this.code = code;
  }
}

/**
 * The server answered with an `error` frame.
 *
 * `details` is the structured context the server attached (for example the field at fault),
 * so programs can react without parsing `message`.
 */
export class RemoteError extends StreamerError {
  declare readonly code: ErrorCode;
  readonly details: JsonObject;
  readonly requestId: string | null;

  constructor(code: ErrorCode, message: string, details: JsonObject = {}, requestId: string | null = null) {
    super(message, code);
    this.name = "RemoteError";
    this.details = details;
    this.requestId = requestId;
  }
}

/** The server refused the frame or its payload as malformed. */
export class ValidationError extends RemoteError {
  override readonly name = "ValidationError";
}

/** The server no longer accepts the caller's credentials. */
export class UnauthorizedError extends RemoteError {
  override readonly name = "UnauthorizedError";
}

/** The caller is known but lacks a permission the action requires. */
export class ForbiddenError extends RemoteError {
  override readonly name = "ForbiddenError";
}

/** The action, topic or request does not exist for this caller. */
export class NotFoundError extends RemoteError {
  override readonly name = "NotFoundError";
}

/** A request id was reused with a different action or payload. */
export class ConflictError extends RemoteError {
  override readonly name = "ConflictError";
}

/** The connection sent more messages than the server allows per window. */
export class RateLimitedError extends RemoteError {
  override readonly name = "RateLimitedError";
}

/** The server gave up on the work; distinct from `RequestTimeoutError`, which is local. */
export class RemoteTimeoutError extends RemoteError {
  override readonly name = "RemoteTimeoutError";
}

/** The action failed on the server in a way it did not classify. */
export class InternalServerError extends RemoteError {
  override readonly name = "InternalServerError";
}

/** The job was cancelled before it finished (by this caller or another one). */
export class RequestCancelledError extends RemoteError {
  override readonly name = "RequestCancelledError";
}

const BY_CODE: { readonly [code in ErrorCode]: typeof RemoteError } = {
  VALIDATION_ERROR: ValidationError,
  UNAUTHORIZED: UnauthorizedError,
  FORBIDDEN: ForbiddenError,
  NOT_FOUND: NotFoundError,
  CONFLICT: ConflictError,
  RATE_LIMITED: RateLimitedError,
  TIMEOUT: RemoteTimeoutError,
  INTERNAL_ERROR: InternalServerError,
  CANCELLED: RequestCancelledError,
};

/** The typed error of a wire error, so every code path maps codes the same way. */
export function remoteError(
  code: ErrorCode,
  message: string,
  details: JsonObject = {},
  requestId: string | null = null,
): RemoteError {
  const Class = BY_CODE[code] ?? RemoteError;
  return new Class(code, message, details, requestId);
}

/** No final answer arrived within the caller's deadline; the work may still run remotely. */
export class RequestTimeoutError extends StreamerError {
  constructor(message: string) {
    super(message, "REQUEST_TIMEOUT");
    this.name = "RequestTimeoutError";
  }
}

/** The client was closed, so nothing can be sent or awaited on it. */
export class ClientClosedError extends StreamerError {
  constructor(message: string) {
    super(message, "CLIENT_CLOSED");
    this.name = "ClientClosedError";
  }
}

/** The client could not reach the server, or gave up reconnecting to it. */
export class ConnectionFailedError extends StreamerError {
  constructor(message: string, code: LocalErrorCode = "CONNECTION_FAILED") {
    super(message, code);
    this.name = "ConnectionFailedError";
  }
}

/**
 * The server refused the WebSocket handshake itself (HTTP 401 or 403).
 *
 * Only WebSocket implementations that expose the handshake's status (`ws` in Node) can tell
 * this apart; a browser reports a refused handshake like an unreachable server.
 */
export class AuthenticationFailedError extends ConnectionFailedError {
  readonly status: number;

  constructor(message: string, status: number) {
    super(message, "AUTHENTICATION_FAILED");
    this.name = "AuthenticationFailedError";
    this.status = status;
  }
}

/**
 * A request was written and the connection dropped before any answer: the server may or may
 * not have run it.
 *
 * The client never resends such a request behind the caller's back, because a synchronous
 * action would then run twice; `resendUnanswered: true` opts in for idempotent actions.
 */
export class OutcomeUnknownError extends ConnectionFailedError {
  readonly action: string;
  readonly requestId: string;

  constructor(message: string, action: string, requestId: string) {
    super(message, "OUTCOME_UNKNOWN");
    this.name = "OutcomeUnknownError";
    this.action = action;
    this.requestId = requestId;
  }
}

/** The frame could not be built locally (bad action name, payload not JSON, too large). */
export class InvalidRequestError extends StreamerError {
  readonly field: string | null;

  constructor(message: string, field: string | null = null) {
    super(message, "INVALID_REQUEST");
    this.name = "InvalidRequestError";
    this.field = field;
  }
}
