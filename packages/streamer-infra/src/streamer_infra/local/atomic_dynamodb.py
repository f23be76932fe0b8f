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

The patch is counted, so that it is in place exactly while at least one emulator that asked
for it runs, and is undone to moto's own method when the last one stops.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["atomic_dynamodb_installed", "install_atomic_dynamodb", "uninstall_atomic_dynamodb"]

_state = threading.Lock()
_users = 0
_original: Callable[[Any], Any] | None = None
_backend_locks: dict[tuple[str, str], threading.Lock] = {}


def _handler_class() -> Any:
    try:
        from moto.dynamodb.responses import DynamoHandler
    except ImportError:
        return None
    if not callable(DynamoHandler.__dict__.get("call_action")):
        return None
    return DynamoHandler


def _backend_lock(account: str, region: str) -> threading.Lock:
    key = (account, region)
    lock = _backend_locks.get(key)
    if lock is None:
        with _state:
            lock = _backend_locks.setdefault(key, threading.Lock())
    return lock


def install_atomic_dynamodb() -> bool:
    """Make moto's DynamoDB requests atomic until the matching `uninstall_atomic_dynamodb`.

    False, and nothing patched, if this moto lacks the hook; each successful call must be
    matched by one uninstall.
    """
    global _original, _users
    with _state:
        if _users == 0:
            handler = _handler_class()
            if handler is None:
                return False
            original: Callable[[Any], Any] = handler.__dict__["call_action"]

            def call_action(self: Any) -> Any:
                with _backend_lock(self.current_account, self.region):
                    return original(self)

            handler.call_action = call_action
            _original = original
        _users += 1
        return True


def uninstall_atomic_dynamodb() -> None:
    """Release one install; the last one puts moto's own method back."""
    global _original, _users
    with _state:
        if _users == 0:
            return
        _users -= 1
        if _users == 0 and _original is not None:
            handler = _handler_class()
            if handler is not None:
                handler.call_action = _original
            _original = None


def atomic_dynamodb_installed() -> bool:
    """Whether moto's DynamoDB requests currently run under the lock."""
    with _state:
        return _users > 0
