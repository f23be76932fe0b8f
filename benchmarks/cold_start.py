"""Cold start: each function's import plus its first invocation, in a fresh interpreter.

On Lambda a new execution environment pays the module import and whatever the first event
sets up (settings, key loading, boto3 clients). Both are timed inside a fresh child process,
after interpreter start-up, so the figure is what the handler code adds. The floor is
`import boto3` alone, which every Python Lambda that talks to AWS pays: the target is at most
1.3x that floor for connect and router, which clients wait on.

The children talk to a moto server over loopback; the first invocation therefore includes one
or two real HTTP round trips to DynamoDB, as on AWS. Their environment holds the key variables
the deployment gives the functions: the public key inline and its Secrets Manager ARN. Before
its clock starts a child imports nothing but `time`, and receives its event as a Python
literal, so no library is pre-loaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from streamer_core.auth import Principal, TokenIssuer, generate_key_pair
from streamer_core.storage import Connection, ConnectionStore, RequestKey, RequestStore

from benchmarks import aws, events
from benchmarks.harness import Result, RunConfig, Target, Unavailable, module_exists

NAME = "cold_start"
MARKER = "BENCH-RESULT"
TARGET = Target(1.3)
FUNCTIONS = ("connect", "router", "disconnect", "processor")
TENANT, USER = "tenant-bench", "user-bench"
EXPECTED_RESPONSE = {
    "connect": "'statusCode': 200",
    "router": "pong",
    "processor": "batchItemFailures",
}

CHILD = """
import time
class _Context:
    function_name = "streamer-bench-{name}"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:streamer-bench-{name}"
    memory_limit_in_mb = 3008
    aws_request_id = "00000000-0000-4000-8000-000000000001"
    log_group_name = "/aws/lambda/streamer-bench-{name}"
    log_stream_name = "bench"
    def get_remaining_time_in_millis(self):
        return 900000
import sys
print("{marker}-T0", file=sys.stderr, flush=True)
_t0 = time.perf_counter()
import {module} as _m
_t1 = time.perf_counter()
_out = {call}
_t2 = time.perf_counter()
print()
print("{marker}", _t1 - _t0, _t2 - _t1, repr(_out)[:300], flush=True)
"""


@dataclass(frozen=True)
class Probe:
    """One child process to time: a module to import and the call that follows it."""

    label: str
    module: str
    call: str
    expect: str | None = None


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "STREAMER_", "POWERTOOLS_"))
        and k not in {"PYTHONDONTWRITEBYTECODE", "PYTHONPROFILEIMPORTTIME"}
    }
    return {**env, **aws.BASE_ENV, **extra}


def _run_child(probe: Probe, env: dict[str, str], *flags: str) -> tuple[float, float, str]:
    code = CHILD.format(name=probe.label, module=probe.module, call=probe.call, marker=MARKER)
    done = subprocess.run(
        [sys.executable, *flags, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(MARKER):
            _, imported, first, output = line.split(" ", 3)
            if probe.expect is not None and probe.expect not in output:
                raise RuntimeError(f"{probe.label}: unexpected first response {output}")
            return float(imported) * 1000, float(first) * 1000, done.stderr
    raise RuntimeError(f"{probe.label} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")


def import_breakdown(stderr: str, top: int = 12) -> dict[str, float]:
    """Self time per top-level package from `-X importtime`, in ms, largest first.

    Only imports after the child's clock started count: interpreter start-up (site, .pth
    hooks) is paid before any handler code and by the baseline alike.
    """
    per_package: dict[str, float] = defaultdict(float)
    lines = stderr.splitlines()
    start = lines.index(f"{MARKER}-T0") + 1 if f"{MARKER}-T0" in lines else 0
    for line in lines[start:]:
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        fields = line.split("|")
        self_us = int(fields[0].split(":")[1])
        package = fields[2].strip().split(".")[0]
        per_package[package] += self_us / 1000
    ranked = sorted(per_package.items(), key=lambda kv: kv[1], reverse=True)
    return {name: round(ms, 1) for name, ms in ranked[:top]}


class _Fixtures:
    """Per-run state in moto: a token, a live connection per child, a queued request."""

    def __init__(self, endpoint: str, env: dict[str, str]) -> None:
        private_pem, public_pem = generate_key_pair("RS256")
        # As deployed on AWS (streamer_infra.aws.functions.base_environment): the public key
        # is given inline and its secret's ARN is given too, for deployments that turn the
        # inline key off (the verifier then reads the secret on first use).
        self.public_pem = public_pem
        self.key_secret = aws.client("secretsmanager", endpoint).create_secret(
            Name="streamer/bench/jwt-public-key", SecretString=public_pem
        )["ARN"]
        self.token = TokenIssuer(private_pem, issuer="bench", audience="bench").issue(
            USER, TENANT, ["reports:write"], ttl=3600
        )
        self.principal = Principal(
            USER, TENANT, frozenset({"reports:write"}), int(time.time()) + 3600
        )
        client = aws.client("dynamodb", endpoint)
        self._connections = ConnectionStore(client, env["STREAMER_CONNECTIONS_TABLE"])
        self._requests = RequestStore(client, env["STREAMER_REQUESTS_TABLE"])
        self.queue_arn = "arn:aws:sqs:us-east-1:123456789012:streamer-bench-work"

    def authorizer(self) -> dict[str, Any]:
        return {"principalId": USER, **self.principal.to_context()}

    @staticmethod
    def new_connection_id() -> str:
        return f"cs{uuid.uuid4().hex[:14]}="

    def live_connection(self) -> str:
        connection_id = self.new_connection_id()
        self._connections.put(
            Connection(
                connection_id=connection_id,
                user_id=USER,
                tenant_id=TENANT,
                permissions=self.principal.permissions,
                connected_at=int(time.time() * 1000),
                expires_at=int(time.time()) + 7200,
                domain_name=events.DOMAIN,
                stage=events.STAGE,
            )
        )
        return connection_id

    def queued_request(self) -> str:
        key = RequestKey(TENANT, USER, f"cold{uuid.uuid4().hex[:20]}")
        self._requests.create(key, "generate_report", {"steps": 3}, connection_id=None)
        return key.to_json()

    def first_event(self, function: str) -> dict[str, Any]:
        """The event a fresh instance of `function` typically sees first."""
        if function == "connect":
            return events.connect_event(self.new_connection_id(), self.token)
        if function == "router":
            ping = '{"action":"ping","id":"cold-start-ping"}'
            return events.message_event(self.live_connection(), ping, self.authorizer())
        if function == "disconnect":
            return events.disconnect_event(self.live_connection(), self.authorizer())
        return events.sqs_event(self.queued_request(), self.queue_arn)

    def probes(self, functions: list[str]) -> list[Probe]:
        probes = [
            Probe("import boto3", "boto3", "None"),
            Probe("import boto3 + client", "boto3", "_m.client('dynamodb')"),
        ]
        for name in functions:
            probes.append(
                Probe(
                    name,
                    f"streamer_handlers.functions.{name}",
                    f"_m.handler({self.first_event(name)!r}, _Context())",
                    EXPECTED_RESPONSE.get(name),
                )
            )
        return probes


def run(config: RunConfig) -> list[Result]:
    present = [n for n in FUNCTIONS if module_exists(f"streamer_handlers.functions.{n}")]
    if not present:
        raise Unavailable("no handler function modules exist yet")

    repeat = config.repeats(full=7, quick=3)
    imports: dict[str, list[float]] = defaultdict(list)
    totals: dict[str, list[float]] = defaultdict(list)
    breakdown: dict[str, dict[str, float]] = {}
    with aws.moto_server() as endpoint, aws.management_sink() as sink:
        resources = aws.provision(endpoint)
        fixtures = _Fixtures(endpoint, resources)
        env = _child_env(
            {
                **resources,
                "STREAMER_MANAGEMENT_ENDPOINT": sink,
                "STREAMER_JWT_PUBLIC_KEY_SECRET": fixtures.key_secret,
                "STREAMER_JWT_PUBLIC_KEY": fixtures.public_pem,
            }
        )
        for probe in fixtures.probes(present):
            _run_child(probe, env)
            if probe.label in FUNCTIONS and not config.quick:
                _, _, stderr = _run_child(probe, env, "-X", "importtime")
                breakdown[probe.label] = import_breakdown(stderr)
        for _ in range(repeat):
            for probe in fixtures.probes(present):
                imported, first, _ = _run_child(probe, env)
                imports[probe.label].append(imported)
                totals[probe.label].append(imported + first)

    floor = imports["import boto3"]
    results = [
        Result(NAME, "import boto3 (floor)", "ms", floor),
        Result(
            NAME,
            "import boto3 + dynamodb client",
            "ms",
            totals["import boto3 + client"],
            baseline_name="boto3",
            baseline_samples=floor,
        ),
    ]
    for name in present:
        results.append(
            Result(
                NAME,
                f"{name} import + first event",
                "ms",
                totals[name],
                baseline_name="boto3",
                baseline_samples=floor,
                target=TARGET if name in {"connect", "router"} else None,
                extra={"import_self_ms_by_package": breakdown.get(name, {})},
            )
        )
        results.append(
            Result(
                NAME,
                f"{name} import only",
                "ms",
                imports[name],
                baseline_name="boto3",
                baseline_samples=floor,
            )
        )
    return results
