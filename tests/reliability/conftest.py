"""Fixtures of the reliability suite, and the watch that no token ever reaches a log line.

Every token minted while this suite runs (by any ``TokenIssuer``: the harness's, the local
stack's, the tests' own forgeries) is remembered, and the output of every phase of every test
here is scanned for it: stdout and stderr as pytest captured them (Powertools writes its JSON
lines there) and every log record, rendered the way it would reach CloudWatch. A leak fails
the test in whose phase it appeared, whatever that test was about.
"""

from __future__ import annotations

import itertools
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from streamer_core.auth import TokenIssuer, generate_key_pair
from streamer_handlers.deployment import reset_runtime

RELIABILITY_DIR = Path(__file__).resolve().parent
if str(RELIABILITY_DIR) not in sys.path:
    # The stacks serve `streamer_reliability_app:app`; the tests import `reliability_support`.
    sys.path.insert(0, str(RELIABILITY_DIR))
HANDLERS_DIR = RELIABILITY_DIR.parent / "handlers"
if str(HANDLERS_DIR) not in sys.path:
    # `handler_doubles`: the test doubles the handler suite shares with this one.
    sys.path.insert(0, str(HANDLERS_DIR))

import handler_doubles  # noqa: E402 - importable only from here on
from reliability_support import (  # noqa: E402 - importable only from here on
    MINTED,
    LogTap,
    MintedTokens,
)

# ----------------------------------------------------------------------------- the token watch


TAP = LogTap()
_QUIET_LOGGERS = ("streamer_core", "streamer_client")
"""Loggers that propagate to the root at WARNING by default: at INFO, more lines get scanned.
The local stack logs as "streamer.local.*", under the handlers' logger, already at INFO."""


@pytest.fixture(scope="session", autouse=True)
def _token_watch() -> Iterator[MintedTokens]:
    """Remember every minted token; tap every log record at INFO and above."""
    original = TokenIssuer.issue

    def issue(self: TokenIssuer, *args: Any, **kwargs: Any) -> str:
        token = original(self, *args, **kwargs)
        MINTED.add(token, args[0] if args else kwargs.get("sub"))
        return token

    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in _QUIET_LOGGERS}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TokenIssuer, "issue", issue)
        root.addHandler(TAP)
        for name in _QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.INFO)
        try:
            yield MINTED
        finally:
            root.removeHandler(TAP)
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Fail the phase in whose output or logs a minted token appeared."""
    outcome = yield
    report = outcome.get_result()
    # Only this phase's stdout and stderr (earlier phases were scanned already). pytest's own
    # "Captured log" sections show raw records, before Powertools' redaction: the tap
    # renders those as they would really be written.
    phase = [
        content
        for name, content in report.sections
        if name in (f"Captured stdout {report.when}", f"Captured stderr {report.when}")
    ]
    texts = (*phase, TAP.drain())
    leaked = sorted({label for text in texts for label in MINTED.leaks(text)})
    if leaked and report.outcome != "failed":
        report.outcome = "failed"
        report.longrepr = (
            f"tokens appeared in the logs or output of the {report.when} phase: "
            + ", ".join(leaked)
        )


@pytest.fixture
def log_tap() -> LogTap:
    """The log lines of the running test phase, as production would have written them."""
    return TAP


# ----------------------------------------------------------------------------- handlers on moto


@pytest.fixture(scope="session")
def signing_keys() -> tuple[str, str]:
    """(private PEM, public PEM) of the suite's token issuer."""
    return generate_key_pair("ES256")


@pytest.fixture(scope="module")
def moto_clients() -> Iterator[dict[str, Any]]:
    """One in-process moto backend per module; never outlives it (the stacks use a server)."""
    with handler_doubles.moto_clients("dynamodb", "sqs", "secretsmanager") as clients:
        yield clients


_envs = itertools.count(1)


@pytest.fixture
def aws(moto_clients: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Fresh tables and work queue for one test, under an environment name of its own."""
    env = f"rel{next(_envs)}"
    dynamodb, sqs = moto_clients["dynamodb"], moto_clients["sqs"]
    with handler_doubles.fresh_tables_and_queue(dynamodb, sqs, env, monkeypatch) as queue_url:
        # The EMF lines would drown the log lines this suite scans; metrics are not under test.
        monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
        yield {**moto_clients, "queue_url": queue_url, "env": env}


@pytest.fixture
def installed_runtime() -> Iterator[None]:
    """Drops whatever runtime a test installed, so the next one starts cold."""
    try:
        yield
    finally:
        reset_runtime()
