"""Changes to moto's classes that exist only while an emulator runs, and act only on its requests.

The emulator changes a few of moto's private methods (`atomic_dynamodb`, `moto_speedups`).
Classes are process-wide, so without care anything else using moto in the same process (a
test's `mock_aws` beside a running stack, an application's own tests) would run the changed
code too, and go on running it after the emulator is gone: whether it did would depend on
what happened to run first. Two rules keep the changes inside the emulator:

- Counted: a `MotoPatches` set is installed by the first `AwsEmulator.start` and put back, to
  the very attributes moto defined, by the matching last `stop`. A process whose emulators
  are all stopped runs moto exactly as moto ships.
- Scoped: each replacement runs moto's own code unless the calling thread is answering one of
  the emulator's requests (`serving`). While an emulator runs, in-process moto on any other
  thread still takes moto's own paths, with moto's own concurrency.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["MotoPatches", "Patch", "serving", "serving_request"]


class _ThreadState(threading.local):
    active = False


_thread = _ThreadState()


def serving_request() -> bool:
    """Whether this thread is answering a request of the emulator."""
    return _thread.active


@contextmanager
def serving() -> Iterator[None]:
    """Mark this thread as answering an emulator request until the block ends."""
    previous = _thread.active
    _thread.active = True
    try:
        yield
    finally:
        _thread.active = previous


@dataclass(frozen=True)
class Patch:
    """One class attribute to replace while the set is installed."""

    owner: type
    name: str
    replace: Callable[[Any], Any]
    """Given moto's own attribute, the one to put in its place."""


_ABSENT = object()
"""The attribute was inherited, not defined on the owner: undoing deletes it again."""


class MotoPatches:
    """A set of patches, in place from the first `install` until the matching last `uninstall`.

    ``find`` is asked for the patches at each first install and answers one entry per hook,
    None where this moto lacks it: the others still apply. It is asked again after a full
    undo, so a test can change what it sees in between.
    """

    def __init__(self, find: Callable[[], Sequence[Patch | None]]) -> None:
        self._find = find
        self._lock = threading.Lock()
        self._users = 0
        self._complete = False
        self._saved: list[tuple[type, str, Any]] = []

    def install(self) -> bool:
        """Count one user; True if every hook was found. Match each call with one uninstall."""
        with self._lock:
            if self._users == 0:
                found = list(self._find())
                for patch in found:
                    if patch is None:
                        continue
                    original = patch.owner.__dict__.get(patch.name, _ABSENT)
                    own = getattr(patch.owner, patch.name)
                    self._saved.append((patch.owner, patch.name, original))
                    setattr(patch.owner, patch.name, patch.replace(own))
                self._complete = all(patch is not None for patch in found)
            self._users += 1
            return self._complete

    def uninstall(self) -> None:
        """Release one install; the last one puts moto's own attributes back."""
        with self._lock:
            if self._users == 0:
                return
            self._users -= 1
            if self._users == 0:
                for owner, name, original in reversed(self._saved):
                    if original is _ABSENT:
                        delattr(owner, name)
                    else:
                        setattr(owner, name, original)
                self._saved.clear()

    @property
    def installed(self) -> bool:
        with self._lock:
            return self._users > 0

    @contextmanager
    def applied(self) -> Iterator[bool]:
        """Installed for the block (answers `install`'s result), undone after."""
        complete = self.install()
        try:
            yield complete
        finally:
            self.uninstall()
