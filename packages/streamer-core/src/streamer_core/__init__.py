"""Streamer's shared core: the wire protocol.

Only the protocol is exported here, because the client installs this package
without the server-side extras; `streamer_core.auth` (PyJWT) and
`streamer_core.storage` (boto3) are imported explicitly by the code that needs them.

The protocol loads on first use of one of its names (PEP 562), not when the package is
imported: importing ``streamer_core.auth`` runs this file first, and the ``$connect``
function, which never touches a frame, should not pay for pydantic's models at cold start.
The exported names are exactly ``streamer_core.protocol.__all__``; type checkers see them
through the star import below.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamer_core.protocol import *  # noqa: F403

_PROTOCOL = "streamer_core.protocol"


if not TYPE_CHECKING:
    # Hidden from type checkers, which then resolve names through the star import only
    # and still flag a name the protocol does not export.

    def __getattr__(name: str) -> Any:
        if name.startswith("__") and name != "__all__":
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        protocol = import_module(_PROTOCOL)
        exported: list[str] = list(protocol.__all__)
        if name == "__all__":
            return exported
        if name not in exported:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(protocol, name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(import_module(_PROTOCOL).__all__))
