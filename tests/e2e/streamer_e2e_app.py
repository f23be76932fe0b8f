"""The application the end-to-end stacks serve: the demo actions plus failure cases.

It lives beside the tests (importable because tests/e2e/conftest.py puts this directory
on sys.path) and is named by STREAMER_APP, the way a user's own application would be.
"""

from __future__ import annotations

from typing import Any

from streamer_handlers import ProgressReporter, Request, Streamer
from streamer_handlers.demo import echo, generate_report

app = Streamer()
app.action("echo")(echo)
app.action("generate_report", asynchronous=True)(generate_report)


@app.action("explode")
def explode(request: Request) -> Any:
    """A sync action with a bug: the client must get an error frame, nothing else breaks."""
    raise RuntimeError("the explode action always fails")


@app.action("explode_later", asynchronous=True)
def explode_later(request: Request, progress: ProgressReporter) -> Any:
    """The same bug in a queued action, after some progress has been streamed."""
    progress.report(50, "halfway")
    raise RuntimeError("the explode_later action always fails")


@app.action("audit", permissions={"audit:read"})
def audit(request: Request) -> Any:
    """Only callable with the audit:read permission."""
    return {"tenant": request.tenant_id, "user": request.user_id}
