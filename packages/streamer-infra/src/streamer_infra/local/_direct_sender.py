"""Frames from the handlers straight to the local gateway's sockets, one hop per batch.

On AWS every frame a handler sends is one management-API call per connection, and the
local gateway serves that API over HTTP for any boto3 client. But the local stack runs the
handlers in the gateway's own process, where a boto3 call costs about a millisecond of
serialising, signing and parsing under one GIL: a publish to 1,000 subscribers would spend
more than a second on work that exists only to cross a process boundary there is not.
So, like httpx's in-process transports, the stack gives the handlers a :class:`Sender`
that hands the whole batch to the gateway's event loop at once.

It keeps the management API's contract, so handler code sees no difference: a connection
that is unknown or closing is gone (a 410: pruned through the same ``on_gone`` as on AWS),
a frame over the message limit is refused (a 413: failed, never retried), everything else
is written to its socket. ``LocalStackConfig(management="http")`` sends through boto3 and
the HTTP API instead, for anyone who wants to watch that path.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from streamer_handlers.deployment import DeliveryReport, Outcome, logger, settle

from streamer_infra.local._limits import byte_size

if TYPE_CHECKING:
    from streamer_infra.local._gateway import Gateway

__all__ = ["GatewaySender"]

DELIVERY_TIMEOUT_SECONDS = 30.0
"""How long a handler waits for its batch; the gateway's loop is stuck if it is ever hit."""


class GatewaySender:
    """A :class:`streamer_handlers.Sender` writing to the sockets of an in-process gateway.

    Called from handler worker threads; the sockets belong to ``loop``, so each batch is
    one coroutine run there, and the calling thread waits for it as it would for HTTP.
    """

    def __init__(
        self,
        gateway: Gateway,
        loop: asyncio.AbstractEventLoop,
        *,
        on_gone: Callable[[str], None] | None = None,
        timeout: float = DELIVERY_TIMEOUT_SECONDS,
    ) -> None:
        self._gateway = gateway
        self._loop = loop
        self._on_gone = on_gone
        self._timeout = timeout

    def send(self, connection_ids: Sequence[str], data: str) -> DeliveryReport:
        """Post ``data`` to every connection; never raises for a single bad connection."""
        ids = list(dict.fromkeys(connection_ids))
        if not ids:
            return DeliveryReport()
        try:
            future = asyncio.run_coroutine_threadsafe(self._deliver(ids, data), self._loop)
            outcomes = future.result(self._timeout)
        except (RuntimeError, concurrent.futures.TimeoutError) as exc:
            # The stack is stopping (its loop is closed) or its loop is wedged.
            logger.warning("delivery failed", extra={"code": type(exc).__name__})
            outcomes = [Outcome.FAILED] * len(ids)
        return settle(ids, outcomes, self._on_gone)

    async def _deliver(self, ids: Sequence[str], data: str) -> list[Outcome]:
        limit = self._gateway.limits.max_message_bytes
        if byte_size(data, limit) > limit:
            for connection_id in ids:
                logger.warning(
                    "delivery failed",
                    extra={"connection_id": connection_id, "code": "PayloadTooLargeException"},
                )
            return [Outcome.FAILED] * len(ids)
        connections = self._gateway.connections
        outcomes: list[Outcome] = []
        for connection_id in ids:
            connection = connections.get(connection_id)
            delivered = connection is not None and await connection.send(data)
            outcomes.append(Outcome.DELIVERED if delivered else Outcome.GONE)
        return outcomes
