"""Cold start: each function's import plus its first invocation, in a fresh interpreter.

On Lambda a new execution environment pays the module import and whatever the first event
sets up (settings, key loading, boto3 clients). Both are timed inside a fresh child process,
after interpreter start-up, so the figure is what the handler code adds. In the development
environment the floor is `import boto3` alone; those rows have no target and show where the
time goes without the archive's bytecode.

The same is measured as deployed: from the archive twin (`streamer_infra.archive_twin`: the
host build of the archive, unpacked read-only, with only the runtime's packages beside it) in
isolated CPython 3.12, with the deployment's environment (tracing on) and the variables Lambda
sets, an X-Ray daemon address whose UDP port nobody reads and a fresh `_X_AMZN_TRACE_ID` per
child. Its baseline is `import boto3` plus one DynamoDB client in the same twin: the least a
function that talks to DynamoDB pays. Targets: connect and router at most 1.3x, processor 2x.

The children talk to a moto server over loopback; the first invocation therefore includes one
or two real HTTP round trips to DynamoDB, as on AWS. Their environment holds the key variables
the deployment gives the functions: the public key inline and its Secrets Manager ARN. Before
its clock starts a child imports nothing but `time`, and receives its event as a Python
literal, so no library is pre-loaded.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from streamer_core.auth import Principal, TokenIssuer, generate_key_pair
from streamer_core.storage import Connection, ConnectionStore, RequestKey, RequestStore
from streamer_handlers.deployment import function_environment, function_specs
from streamer_infra.archive_twin import (
    LAMBDA_PYTHON,
    Twin,
    TwinError,
    prepare_twin,
    twin_command,
    twin_sys_path,
)
from streamer_infra.build import BuildError, ensure_archive
from streamer_infra.local._invoker import LocalFunction
from streamer_infra.local._processes import ArchiveRuntime, lambda_variables, trace_header

from benchmarks import aws, events
from benchmarks.harness import Result, RunConfig, Target, Unavailable, module_exists

NAME = "cold_start"
MARKER = "BENCH-RESULT"
FUNCTIONS = ("connect", "router", "disconnect", "processor")
TENANT, USER = "tenant-bench", "user-bench"
DEPLOYED_TARGETS = {"connect": Target(1.3), "router": Target(1.3), "processor": Target(2.0)}
DEPLOYED_BASELINE = "boto3 + client, deployed"
TWIN_DIR = "streamer-lambda.bench-twin"
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
{prelude}print("{marker}-T0", file=sys.stderr, flush=True)
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


def _run_child(
    probe: Probe, env: dict[str, str], *flags: str, twin: Twin | None = None
) -> tuple[float, float, str]:
    """One fresh interpreter: this environment's, or the twin's (isolated, with the path
    Lambda gives: the task root first, the runtime's packages after the standard library)."""
    prelude = ""
    if twin is not None:
        task_root, runtime_dir = twin_sys_path(twin)
        prelude = f"sys.path[:0] = [{task_root!r}]\nsys.path.append({runtime_dir!r})\n"
    code = CHILD.format(
        name=probe.label, module=probe.module, call=probe.call, marker=MARKER, prelude=prelude
    )
    if twin is None:
        command, cwd = [sys.executable, *flags, "-c", code], None
    else:
        command = twin_command(twin, "-c", code, python_flags=flags)
        cwd = str(twin.task_root)
        # Lambda sets a new trace header for every invocation; each child is one.
        env = {**env, "_X_AMZN_TRACE_ID": trace_header()}
    done = subprocess.run(
        command,
        env=env,
        cwd=cwd,
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


@contextlib.contextmanager
def _unread_udp_port() -> Iterator[str]:
    """An address for `AWS_XRAY_DAEMON_ADDRESS`: a bound UDP socket nobody reads, so the
    children's segments are sent as on Lambda and simply dropped."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sink.getsockname()[1]}"


def _deployed_twin() -> Twin:
    """The host archive (built once, then reused while its inputs are unchanged) unpacked as
    Lambda would run it; a directory of its own, so a running `streamer dev --from-build`
    keeps its twin."""
    try:
        archive = ensure_archive("host").path
        return prepare_twin(archive, archive.parent / TWIN_DIR)
    except (BuildError, TwinError) as exc:
        raise Unavailable(f"the archive twin cannot be made: {exc}") from exc


def _deployed_env(
    twin: Twin,
    function: str,
    resources: dict[str, str],
    fixtures: _Fixtures,
    endpoints: tuple[str, str, str],
) -> dict[str, str]:
    """The deployment's variables (`function_environment`, as the Pulumi program gives
    them), the local-only ones (moto's endpoint, fake credentials, the demo job's step delay)
    and what Lambda's runtime sets, last because a function's own cannot override them."""
    endpoint, management, xray = endpoints
    tables = {
        key.removeprefix("STREAMER_").removesuffix("_TABLE").lower(): value
        for key, value in resources.items()
        if key.endswith("_TABLE")
    }
    contract = function_environment(
        aws.ENV_NAME,
        tables=tables,
        queue_url=resources["STREAMER_QUEUE_URL"],
        management_endpoint=management,
        jwt_public_key_secret=fixtures.key_secret,
        jwt_public_key=fixtures.public_pem,
        jwt_issuer="bench",
        jwt_audience="bench",
    )
    local_only = {
        "AWS_ACCESS_KEY_ID": aws.BASE_ENV["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": aws.BASE_ENV["AWS_SECRET_ACCESS_KEY"],
        "AWS_SESSION_TOKEN": aws.BASE_ENV["AWS_SESSION_TOKEN"],
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "STREAMER_DEMO_DELAY": "0",
    }
    spec = {s.name: s for s in function_specs()}[function]
    runtime = ArchiveRuntime(
        python=twin.python,
        task_root=twin.task_root,
        runtime_dir=twin.runtime_dir,
        environment={},
        python_version=(
            LAMBDA_PYTHON
            if twin.python_is_lambdas
            else f"{sys.version_info.major}.{sys.version_info.minor}"
        ),
        xray_daemon_address=xray,
    )
    local = LocalFunction(
        name=function, handler=_not_run_here, entry=str(spec.handler), memory=int(spec.memory)
    )
    name = f"streamer-{function}-{aws.ENV_NAME}"
    return {**contract, **local_only, **lambda_variables(runtime, local, name, aws.REGION)}


def _not_run_here(event: Any, context: Any) -> Any:
    raise AssertionError("the deployed cold start runs the handler in the twin, not here")


def run(config: RunConfig) -> list[Result]:
    present = [n for n in FUNCTIONS if module_exists(f"streamer_handlers.functions.{n}")]
    if not present:
        raise Unavailable("no handler function modules exist yet")

    twin = _deployed_twin()
    repeat = config.repeats(full=7, quick=3)
    imports: dict[str, list[float]] = defaultdict(list)
    totals: dict[str, list[float]] = defaultdict(list)
    deployed_imports: dict[str, list[float]] = defaultdict(list)
    deployed_totals: dict[str, list[float]] = defaultdict(list)
    breakdown: dict[str, dict[str, float]] = {}
    deployed_breakdown: dict[str, dict[str, float]] = {}
    with (
        aws.moto_server() as endpoint,
        aws.management_sink() as sink,
        _unread_udp_port() as xray,
    ):
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
        deployed_env = {
            name: _deployed_env(twin, name, resources, fixtures, (endpoint, sink, xray))
            for name in present
        }
        # The baseline runs where a function would: any function's environment will do.
        deployed_env["import boto3 + client"] = deployed_env[present[0]]
        for probe in fixtures.probes(present):
            _run_child(probe, env)
            if probe.label in FUNCTIONS and not config.quick:
                _, _, stderr = _run_child(probe, env, "-X", "importtime")
                breakdown[probe.label] = import_breakdown(stderr)
        for probe in fixtures.probes(present):
            if probe.label in deployed_env:
                _run_child(probe, deployed_env[probe.label], twin=twin)
                if probe.label in FUNCTIONS and not config.quick:
                    _, _, stderr = _run_child(
                        probe, deployed_env[probe.label], "-X", "importtime", twin=twin
                    )
                    deployed_breakdown[probe.label] = import_breakdown(stderr)
        for _ in range(repeat):
            for probe in fixtures.probes(present):
                imported, first, _ = _run_child(probe, env)
                imports[probe.label].append(imported)
                totals[probe.label].append(imported + first)
            for probe in fixtures.probes(present):
                if probe.label not in deployed_env:
                    continue
                imported, first, _ = _run_child(probe, deployed_env[probe.label], twin=twin)
                deployed_imports[probe.label].append(imported)
                deployed_totals[probe.label].append(imported + first)

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
                target=None,
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
    return results + _deployed_results(
        twin, present, deployed_imports, deployed_totals, deployed_breakdown
    )


def _deployed_results(
    twin: Twin,
    present: list[str],
    imports: dict[str, list[float]],
    totals: dict[str, list[float]],
    breakdown: dict[str, dict[str, float]],
) -> list[Result]:
    baseline = totals["import boto3 + client"]
    interpreter = {"python": str(twin.python), "python_is_lambdas": twin.python_is_lambdas}
    note = (
        None
        if twin.python_is_lambdas
        else f"CPython {LAMBDA_PYTHON} not installed: ran on {twin.python}"
    )
    results = [
        Result(
            NAME,
            "deployed: import boto3 + dynamodb client (baseline)",
            "ms",
            baseline,
            note=note,
            extra=interpreter,
        )
    ]
    for name in present:
        results.append(
            Result(
                NAME,
                f"deployed: {name} import + first event",
                "ms",
                totals[name],
                baseline_name=DEPLOYED_BASELINE,
                baseline_samples=baseline,
                target=DEPLOYED_TARGETS.get(name),
                note=note,
                extra={"import_self_ms_by_package": breakdown.get(name, {})},
            )
        )
        results.append(
            Result(
                NAME,
                f"deployed: {name} import only",
                "ms",
                imports[name],
                baseline_name=DEPLOYED_BASELINE,
                baseline_samples=baseline,
                note=note,
            )
        )
    return results
