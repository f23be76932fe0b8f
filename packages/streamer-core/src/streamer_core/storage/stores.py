"""All three stores over one client, named the way every deployment names its tables."""

from __future__ import annotations

import time
from typing import Any

from streamer_core.storage.clock import Clock
from streamer_core.storage.connections import ConnectionStore
from streamer_core.storage.requests import RequestStore
from streamer_core.storage.subscriptions import SubscriptionStore
from streamer_core.storage.tables import CONNECTIONS, REQUESTS, SUBSCRIPTIONS, TableSpec


def _table_name(spec: TableSpec, explicit: str | None, env: str | None) -> str:
    if explicit is not None:
        return explicit
    if env is None:
        raise ValueError(f"give env or an explicit name for the {spec.logical_name} table")
    return spec.physical_name(env)


class Storage:
    """An explicit table name wins over the env-derived one (deployments may rename tables)."""

    def __init__(
        self,
        client: Any,
        *,
        env: str | None = None,
        connections_table: str | None = None,
        subscriptions_table: str | None = None,
        requests_table: str | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.connections = ConnectionStore(
            client, _table_name(CONNECTIONS, connections_table, env), clock=clock
        )
        self.subscriptions = SubscriptionStore(
            client, _table_name(SUBSCRIPTIONS, subscriptions_table, env), clock=clock
        )
        self.requests = RequestStore(
            client, _table_name(REQUESTS, requests_table, env), clock=clock
        )
