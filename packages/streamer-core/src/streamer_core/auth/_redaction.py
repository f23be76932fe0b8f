"""Scrubbing tokens out of text before it is logged: a logged bearer token is a leaked key."""

from __future__ import annotations

import re

REDACTED = "[REDACTED]"

# A JWT's header is base64url JSON, so it always starts with "eyJ" ('{"'). Two or more
# dot-separated base64url segments follow; empty ones are allowed (an unsigned token ends with a
# dot). The look-behind keeps the match from starting inside a longer word.
_JWT_SHAPED = re.compile(
    r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*)*"
)


def redact_tokens(text: str) -> str:
    """``text`` with every JWT-shaped substring replaced by ``[REDACTED]``."""
    if "eyJ" not in text:
        return text
    return _JWT_SHAPED.sub(REDACTED, text)
