"""aiohttp's own log lines pass the gateway's redaction, tracebacks included."""

from __future__ import annotations

import logging
import sys

from streamer_infra.local import _gateway as gateway

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


def test_a_parser_errors_traceback_is_redacted_before_any_handler_formats_it() -> None:
    try:
        raise ValueError(f"Got more than 81920 bytes when reading: Authorization: Bearer {TOKEN}")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "aiohttp.server",
        logging.ERROR,
        __file__,
        1,
        "Error handling request from %s",
        ("x",),
        exc_info,
    )
    assert gateway._RedactTokens().filter(record)
    formatted = logging.Formatter().format(record)
    assert TOKEN not in formatted
    assert "Error handling request from x" in formatted
    assert "ValueError" in formatted
