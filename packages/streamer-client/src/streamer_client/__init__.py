"""Python client for Streamer WebSocket APIs: asyncio first, with a blocking facade and a CLI.

``StreamerClient`` keeps one WebSocket alive (heartbeat, reconnect with backoff, renewal before
the gateway's connection limit) and runs requests, long jobs and topic subscriptions over it.
``streamer_client.sync.StreamerClient`` offers the same methods to code without an event loop.
"""

from streamer_core import ErrorCode, EventFrame, ProgressFrame, RequestStatus

from streamer_client._client import ProgressCallback, StreamerClient
from streamer_client._connection import ClientSocket, Connector, TokenProvider
from streamer_client._errors import (
    AuthenticationFailed,
    ClientClosed,
    ConflictError,
    ConnectionFailed,
    ForbiddenError,
    InternalServerError,
    InvalidRequest,
    NotFoundError,
    RateLimitedError,
    RemoteError,
    RemoteTimeoutError,
    RequestCancelledError,
    RequestTimeout,
    StreamerError,
    UnauthorizedError,
    ValidationError,
)
from streamer_client._jobs import Job
from streamer_client._states import ConnectionState, StateCallback
from streamer_client._subscriptions import Subscription

__all__ = [
    "AuthenticationFailed",
    "ClientClosed",
    "ClientSocket",
    "ConflictError",
    "ConnectionFailed",
    "ConnectionState",
    "Connector",
    "ErrorCode",
    "EventFrame",
    "ForbiddenError",
    "InternalServerError",
    "InvalidRequest",
    "Job",
    "NotFoundError",
    "ProgressCallback",
    "ProgressFrame",
    "RateLimitedError",
    "RemoteError",
    "RemoteTimeoutError",
    "RequestCancelledError",
    "RequestStatus",
    "RequestTimeout",
    "StateCallback",
    "StreamerClient",
    "StreamerError",
    "Subscription",
    "TokenProvider",
    "UnauthorizedError",
    "ValidationError",
]
