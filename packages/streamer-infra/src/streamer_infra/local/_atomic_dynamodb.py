"""Each emulated DynamoDB request applied at once, as the service applies it.

moto's server answers on werkzeug threads, and its DynamoDB backend checks a condition and
then writes, attribute by attribute and item by item, holding nothing in between. A reader on
another thread could see half of an `UpdateItem` (a status without the result written with
it) or of a `TransactWriteItems`, and two conditional writes of one key could both pass their
check: what DynamoDB never allows, and what the handlers' idempotency and state transitions
rely on.

One lock per backend (an account in a Region, which is how moto partitions its state) is
held around moto's handling of each DynamoDB request: the action and the serialization of
its answer, so a response never shows an item another request is changing. Every request
type takes it (`BatchWriteItem` and the transactions included); other services never do.

Only the emulator's own requests take the lock (`moto_patches`): in-process moto elsewhere in
the process keeps moto's own concurrency, and the patch is in place exactly while at least one
emulator runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from streamer_infra.local._moto_patches import MotoPatches, Patch, serving_request

__all__ = [
    "ATOMIC_DYNAMODB",
    "atomic_dynamodb_installed",
    "install_atomic_dynamodb",
    "uninstall_atomic_dynamodb",
]

_state = threading.Lock()
_backend_locks: dict[tuple[str, str], threading.Lock] = {}


def _backend_lock(account: str, region: str) -> threading.Lock:
    key = (account, region)
    lock = _backend_locks.get(key)
    if lock is None:
        with _state:
            lock = _backend_locks.setdefault(key, threading.Lock())
    return lock


def _locked(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def call_action(self: Any) -> Any:
        if not serving_request():
            return original(self)
        with _backend_lock(self.current_account, self.region):
            return original(self)

    return call_action


def _patches() -> Sequence[Patch | None]:
    try:
        from moto.dynamodb.responses import DynamoHandler
    except ImportError:
        return [None]
    if not callable(DynamoHandler.__dict__.get("call_action")):
        return [None]
    return [Patch(DynamoHandler, "call_action", _locked)]


ATOMIC_DYNAMODB = MotoPatches(_patches)


def install_atomic_dynamodb() -> bool:
    """Make the emulator's DynamoDB requests atomic until the matching uninstall.

    False if this moto lacks the hook (nothing is locked then); either way, match each call
    with one `uninstall_atomic_dynamodb`.
    """
    return ATOMIC_DYNAMODB.install()


def uninstall_atomic_dynamodb() -> None:
    """Release one install; the last one puts moto's own method back."""
    ATOMIC_DYNAMODB.uninstall()


def atomic_dynamodb_installed() -> bool:
    """Whether the emulator's DynamoDB requests currently run under the lock."""
    return ATOMIC_DYNAMODB.installed
