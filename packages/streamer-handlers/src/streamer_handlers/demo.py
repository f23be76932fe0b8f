"""The application served when STREAMER_APP is not set: enough to try every code path.

``echo`` answers at once; ``generate_report`` is queued and reports progress in steps
separated by STREAMER_DEMO_DELAY seconds (short in tests, visible in a demo); ``announce``
publishes to a topic of the caller's tenant from inside a function, the path a backend's
:func:`~streamer_handlers._publish` takes.
"""

from __future__ import annotations

import time
from typing import Any

from streamer_core import ErrorCode

from streamer_handlers._app import Streamer
from streamer_handlers._errors import ActionError
from streamer_handlers._lambda.settings import get_settings
from streamer_handlers._progress import ProgressReporter
from streamer_handlers._publish import publish
from streamer_handlers._request import Request

app = Streamer()
MAX_STEPS = 100


@app.action("echo")
def echo(request: Request) -> Any:
    """Return the payload unchanged."""
    return request.payload


@app.action("generate_report", asynchronous=True)
def generate_report(request: Request, progress: ProgressReporter) -> Any:
    """Pretend to build a report: ``payload.steps`` (default 5) steps, then a summary."""
    steps = request.payload.get("steps", 5)
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= MAX_STEPS:
        raise ActionError(
            ErrorCode.VALIDATION_ERROR,
            f"payload.steps must be an integer from 1 to {MAX_STEPS}",
            {"field": "payload.steps"},
        )
    delay = get_settings().demo_delay
    title = str(request.payload.get("title", "report"))
    progress.report(0, "starting")
    for step in range(1, steps + 1):
        if delay:
            time.sleep(delay)
        progress.report(step * 100 / steps, f"step {step} of {steps}", step=step)
    return {"title": title, "steps": steps, "rows": steps * 10, "requested_by": request.user_id}


@app.action("announce", permissions={"topics:publish"})
def announce(request: Request) -> Any:
    """Publish ``payload.data`` to ``payload.topic`` of the caller's own tenant."""
    topic = request.payload.get("topic")
    if not isinstance(topic, str):
        raise ActionError(
            ErrorCode.VALIDATION_ERROR, "payload.topic must be a string", {"field": "payload.topic"}
        )
    try:
        report = publish(request.tenant_id, topic, request.payload.get("data"))
    except ValueError as exc:
        raise ActionError(
            ErrorCode.VALIDATION_ERROR, str(exc), {"field": "payload.topic"}
        ) from None
    return {"topic": topic, "delivered": len(report.delivered), "gone": len(report.gone)}
