"""The runtime side of a worker process of `streamer dev --from-build`: what Lambda's
python3.12 runtime does inside an execution environment, minus the HTTP runtime API.

It is run as a script by an isolated interpreter (``python -I -S``), so it imports nothing but
the standard library until the handler's own import, which finds only the unpacked archive and
the runtime-provided packages: a module the archive lacks fails here as it would on AWS.

Protocol with the parent (`processes.py`), one JSON document per line:
- the worker writes ``{"ready": init_ms}`` or ``{"init_error": {...}}`` once, after the
  handler's import (Lambda's init phase);
- the parent writes one invocation ``{"event", "request_id", "deadline_ms", "trace_id"}``
  at a time and the worker answers ``{"result": ...}`` or ``{"error": {...}}``.
The protocol uses the worker's original stdout; the handler's own prints and logs go to
stderr, where the parent shows them as Lambda's log stream would.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from typing import Any


class _Context:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    def __init__(self, request_id: str, deadline_ms: float) -> None:
        env = os.environ
        self.function_name = env["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = int(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        region = env.get("AWS_REGION", "us-east-1")
        account = env.get("STREAMER_LOCAL_ACCOUNT_ID", "123456789012")
        self.invoked_function_arn = (
            f"arn:aws:lambda:{region}:{account}:function:{self.function_name}"
        )
        self.aws_request_id = request_id
        self.identity: Any = None
        self.client_context: Any = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self._deadline_ms - time.time() * 1000))


def _error(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    """Lambda's error payload: type, message and the formatted stack."""
    return {
        "errorType": error_type or type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_exception(exc),
    }


def _load(handler: str) -> Any:
    module_name, _, attribute = handler.rpartition(".")
    if not module_name:
        raise ValueError(f"Bad handler '{handler}': not enough values to unpack")
    return getattr(importlib.import_module(module_name), attribute)


def main() -> None:
    task_root, runtime_dir = sys.argv[1], sys.argv[2]
    sys.path[:0] = [task_root]
    sys.path.append(runtime_dir)
    # The protocol keeps the original stdout; everything the handler prints goes to stderr.
    channel = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    requests = sys.stdin

    started = time.perf_counter()
    try:
        handler = _load(os.environ["_HANDLER"])
    except Exception as exc:
        kind = "Runtime.ImportModuleError" if isinstance(exc, ImportError) else None
        channel.write(json.dumps({"init_error": _error(exc, kind)}) + "\n")
        return
    channel.write(json.dumps({"ready": (time.perf_counter() - started) * 1000}) + "\n")

    for line in requests:
        invocation = json.loads(line)
        os.environ["_X_AMZN_TRACE_ID"] = invocation["trace_id"]
        context = _Context(invocation["request_id"], invocation["deadline_ms"])
        try:
            result = handler(invocation["event"], context)
        except BaseException as exc:  # a handler's sys.exit() ends its invocation, as on Lambda
            answer = json.dumps({"error": _error(exc)})
        else:
            try:
                answer = json.dumps({"result": result})
            except (TypeError, ValueError) as exc:
                message = f"Unable to marshal response: {exc}"
                answer = json.dumps(
                    {"error": {"errorType": "Runtime.MarshalError", "errorMessage": message}}
                )
        sys.stdout.flush()
        sys.stderr.flush()
        channel.write(answer + "\n")


if __name__ == "__main__":
    main()
