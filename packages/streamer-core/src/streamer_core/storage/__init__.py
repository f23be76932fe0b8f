"""DynamoDB storage for connections, subscriptions and requests (needs the ``aws`` extra).

Callers pass in a low-level ``boto3.client("dynamodb")`` so that one client, with whatever
endpoint and credentials the process uses, serves every store.
"""

from streamer_core.storage.clock import Clock
from streamer_core.storage.connections import ConnectionStore
from streamer_core.storage.errors import (
    ConflictError,
    IllegalTransitionError,
    InvalidTokenError,
    ItemTooLargeError,
    StorageError,
    UnprocessedItemsError,
)
from streamer_core.storage.pagination import Page
from streamer_core.storage.records import Connection, RequestKey, RequestRecord
from streamer_core.storage.requests import RequestStore
from streamer_core.storage.stores import Storage
from streamer_core.storage.subscriptions import SubscriptionStore
from streamer_core.storage.tables import (
    CONNECTIONS,
    REQUESTS,
    SUBSCRIPTIONS,
    TABLES,
    IndexSpec,
    KeyAttribute,
    TableSpec,
    create_tables,
)

__all__ = [
    "CONNECTIONS",
    "REQUESTS",
    "SUBSCRIPTIONS",
    "TABLES",
    "Clock",
    "ConflictError",
    "Connection",
    "ConnectionStore",
    "IllegalTransitionError",
    "IndexSpec",
    "InvalidTokenError",
    "ItemTooLargeError",
    "KeyAttribute",
    "Page",
    "RequestKey",
    "RequestRecord",
    "RequestStore",
    "Storage",
    "StorageError",
    "SubscriptionStore",
    "TableSpec",
    "UnprocessedItemsError",
    "create_tables",
]
