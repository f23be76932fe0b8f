/**
 * Client for Streamer WebSocket APIs in browsers and Node: requests, long jobs with live
 * progress, and topic subscriptions over one self-healing WebSocket.
 */

export {
  StreamerClient,
  DEFAULT_HEARTBEAT_INTERVAL,
  DEFAULT_MAX_CONNECTION_AGE,
  DEFAULT_MAX_QUEUED,
  type ClientEvents,
  type RequestOptions,
  type StreamerClientOptions,
  type SubmitOptions,
  type SubscribeOptions,
} from "./client.js";
export { Job, type WaitOptions } from "./jobs.js";
export { Subscription } from "./subscriptions.js";
export type { ConnectionState } from "./states.js";
export type { Logger } from "./logger.js";
export type {
  TokenPlacement,
  TokenSource,
  WebSocketConstructor,
  WebSocketEventLike,
  WebSocketLike,
} from "./link.js";
export {
  AuthenticationFailedError,
  ClientClosedError,
  ConflictError,
  ConnectionFailedError,
  ForbiddenError,
  InternalServerError,
  InvalidRequestError,
  NotFoundError,
  OutcomeUnknownError,
  RateLimitedError,
  RemoteError,
  RemoteTimeoutError,
  RequestCancelledError,
  RequestTimeoutError,
  StreamerError,
  UnauthorizedError,
  ValidationError,
  type LocalErrorCode,
} from "./errors.js";
export {
  ERROR_CODES,
  REQUEST_STATUSES,
  TERMINAL_STATUSES,
  MAX_FRAME_BYTES,
  MAX_NESTING_DEPTH,
  FrameError,
  parseServerFrame,
  type AcknowledgmentFrame,
  type ClientFrame,
  type CompleteFrame,
  type ErrorCode,
  type ErrorFrame,
  type ErrorInfo,
  type EventFrame,
  type Integer,
  type JsonObject,
  type JsonValue,
  type PongFrame,
  type ProgressFrame,
  type ProgressState,
  type RequestRefPayload,
  type RequestSnapshot,
  type RequestStatus,
  type ResponseFrame,
  type ServerFrame,
  type ServerFrameType,
  type StatusFrame,
  type SubscribedFrame,
  type TopicPayload,
  type UnsubscribedFrame,
} from "./frames.js";
export { newRequestId } from "./ids.js";
