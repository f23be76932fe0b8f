"""How long a queued job stays invisible, for the deployed queue and the local one alike.

Kept apart from the Pulumi program so that starting the local stack never imports the
Pulumi provider, and so that both places follow one rule.
"""

from __future__ import annotations

# AWS's guidance for SQS-triggered functions: a message must stay invisible for several
# function timeouts, or a batch still being retried inside Lambda is delivered a second time.
VISIBILITY_TIMEOUT_FACTOR = 6
MAX_VISIBILITY_TIMEOUT = 43_200
"""SQS's own ceiling, in seconds."""


def visibility_timeout(processor_timeout: int) -> int:
    """Six processor timeouts; refuses a processor timeout SQS cannot cover."""
    seconds = VISIBILITY_TIMEOUT_FACTOR * processor_timeout
    if seconds > MAX_VISIBILITY_TIMEOUT:
        raise ValueError(
            f"processor timeout {processor_timeout}s needs a visibility timeout of {seconds}s, "
            f"over SQS's maximum of {MAX_VISIBILITY_TIMEOUT}s"
        )
    return seconds
