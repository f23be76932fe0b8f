"""Runs the Pulumi program under Pulumi's mocks and records what it creates.

The mocks echo every input back as an output and add the attributes AWS would compute (ids,
ARNs, URLs, endpoints), so `.apply` chains run for real (`preview=False`) and each recorded
resource holds its fully resolved inputs. Stack config comes from the real Pulumi.<env>.yaml
files, so the tests also check what those files say.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml

PROJECT_DIR = Path(__file__).resolve().parents[2] / "packages" / "streamer-infra"
ENVIRONMENTS = ("dev", "staging", "production")
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
API_ID = "a1b2c3d4e5"
PUBLIC_KEY = (
    "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n"
)
PRIVATE_KEY = (
    "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49\n-----END PRIVATE KEY-----\n"
)

_SERVICES = {
    "aws:dynamodb/table:Table": "dynamodb",
    "aws:sqs/queue:Queue": "sqs",
    "aws:lambda/function:Function": "lambda",
    "aws:cloudwatch/logGroup:LogGroup": "logs",
    "aws:kms/key:Key": "kms",
    "aws:secretsmanager/secret:Secret": "secretsmanager",
    "aws:iam/role:Role": "iam",
    "aws:sns/topic:Topic": "sns",
}


@dataclass(frozen=True)
class Recorded:
    """One resource the program registered: Pulumi type token, logical name, inputs, outputs."""

    type: str
    name: str
    inputs: Mapping[str, Any]
    outputs: Mapping[str, Any]


@dataclass
class RecordingMocks(pulumi.runtime.Mocks):
    """Answers like AWS would, and keeps every registration for the assertions."""

    resources: list[Recorded] = field(default_factory=list)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        outputs = dict(args.inputs)
        name = str(args.inputs.get("name") or args.name)
        service = _SERVICES.get(args.typ, "mock")
        kind = args.typ.rsplit(":", 1)[-1].lower()
        outputs.setdefault("arn", f"arn:aws:{service}:{REGION}:{ACCOUNT_ID}:{kind}/{name}")
        if args.typ == "aws:apigatewayv2/api:Api":
            outputs["apiEndpoint"] = f"wss://{API_ID}.execute-api.{REGION}.amazonaws.com"
            outputs["executionArn"] = f"arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:{API_ID}"
            resource_id = API_ID
        else:
            resource_id = f"{args.name}-id"
        if args.typ == "aws:apigatewayv2/stage:Stage":
            outputs["invokeUrl"] = (
                f"wss://{API_ID}.execute-api.{REGION}.amazonaws.com/{args.inputs['name']}"
            )
        if args.typ == "aws:lambda/function:Function":
            outputs["invokeArn"] = (
                f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/"
                f"{outputs['arn']}/invocations"
            )
        if args.typ == "aws:sqs/queue:Queue":
            outputs["url"] = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT_ID}/{name}"
        if args.typ == "aws:kms/key:Key":
            outputs["keyId"] = "key-id"
        self.resources.append(Recorded(args.typ, args.name, args.inputs, outputs))
        return resource_id, outputs

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            arn = f"arn:aws:iam::{ACCOUNT_ID}:user/deployer"
            return {"accountId": ACCOUNT_ID, "arn": arn, "userId": "AIDA", "id": ACCOUNT_ID}, []
        if args.token == "aws:index/getPartition:getPartition":
            return {
                "partition": "aws",
                "dnsSuffix": "amazonaws.com",
                "reverseDnsPrefix": "com.amazonaws",
                "id": "aws",
            }, []
        raise AssertionError(f"unexpected invoke {args.token}")


@dataclass(frozen=True)
class Deployment:
    """The outcome of one program run: resources and resolved stack outputs."""

    environment: str
    resources: tuple[Recorded, ...]
    outputs: Mapping[str, Any]

    def of_type(self, token: str) -> list[Recorded]:
        return [r for r in self.resources if r.type == token]

    def one(self, token: str, name: str) -> Recorded:
        found = [r for r in self.resources if r.type == token and r.name == name]
        assert len(found) == 1, f"expected one {token} named {name}, found {len(found)}"
        return found[0]


def stack_config(environment: str) -> dict[str, Any]:
    """The stack file's config, as the Pulumi CLI would hand it to the program."""
    document = yaml.safe_load((PROJECT_DIR / f"Pulumi.{environment}.yaml").read_text())
    return dict(document["config"])


def run_program(
    environment: str, artifact: Path, overrides: Mapping[str, Any] | None = None
) -> Deployment:
    """Run `streamer_infra.aws.program()` under fresh mocks for `environment`."""
    from streamer_infra.aws import program

    # Pulumi's runtime runs on the thread's current event loop; async tests elsewhere in the
    # session leave none behind, so each run gets its own and closes it.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return _run(program, environment, artifact, overrides)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def _run(
    program: Callable[[], Mapping[str, pulumi.Output[Any]]],
    environment: str,
    artifact: Path,
    overrides: Mapping[str, Any] | None,
) -> Deployment:
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="streamer", stack=environment, preview=False)
    config = {
        **stack_config(environment),
        "streamer:jwtPublicKey": PUBLIC_KEY,
        "streamer:jwtPrivateKey": PRIVATE_KEY,
        "streamer:artifactPath": str(artifact),
        **(overrides or {}),
    }
    values = {
        k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items() if v is not None
    }
    pulumi.runtime.set_all_config(
        values, secret_keys=["streamer:jwtPublicKey", "streamer:jwtPrivateKey"]
    )
    resolved: dict[str, Any] = {}

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def deploy() -> pulumi.Output[None]:
        return pulumi.Output.all(**program()).apply(resolved.update)

    deploy()
    return Deployment(environment, tuple(mocks.resources), resolved)
