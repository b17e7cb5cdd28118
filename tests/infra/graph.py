"""The program's resource graph under `pulumi.runtime.set_mocks`: every resource registered, with
its inputs resolved and the outputs the cloud would compute (names, ARNs, URLs)."""

from __future__ import annotations

import json
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi

ACCOUNT = "123456789012"
REGION = "us-east-1"


@dataclass
class Res:
    typ: str  # "aws:sqs/queue:Queue"
    name: str  # the Pulumi resource name
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    parent: str | None

    def json(self, key: str) -> Any:
        raw = self.inputs.get(key)
        return json.loads(raw) if isinstance(raw, str) else raw


def _service(typ: str) -> str:
    return typ.split(":")[1].split("/")[0]


def _outputs(typ: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """What AWS would answer: physical names (given or generated) and ARNs built from them."""
    physical = inputs.get("name") or inputs.get("bucket") or f"{name}-1a2b3c"
    service = _service(typ)
    out = {**inputs, "name": physical}
    rid = physical
    if typ == "aws:sqs/queue:Queue":
        rid = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{physical}"
        out.update(arn=f"arn:aws:sqs:{REGION}:{ACCOUNT}:{physical}", url=rid)
    elif typ == "aws:lambda/function:Function":
        arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{physical}"
        invoke = f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{arn}/invocations"
        out.update(arn=arn, invoke_arn=invoke, invokeArn=invoke, qualifiedArn=f"{arn}:$LATEST")
    elif typ == "aws:iam/role:Role":
        out.update(arn=f"arn:aws:iam::{ACCOUNT}:role/{physical}")
    elif typ == "aws:s3/bucket:Bucket":
        out.update(arn=f"arn:aws:s3:::{physical}", bucket=physical)
    elif typ == "aws:apigatewayv2/api:Api":
        rid = "a1b2c3d4e5"
        out.update(
            apiEndpoint=f"https://{rid}.execute-api.{REGION}.amazonaws.com",
            executionArn=f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{rid}",
            arn=f"arn:aws:apigateway:{REGION}::/apis/{rid}",
        )
    elif typ == "aws:apigatewayv2/stage:Stage":
        out.update(invokeUrl=f"https://a1b2c3d4e5.execute-api.{REGION}.amazonaws.com/")
    elif typ == "aws:kms/key:Key":
        rid = "0f0e0d0c-key"
        out.update(arn=f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{rid}", keyId=rid)
    elif typ == "aws:cloudwatch/logGroup:LogGroup":
        out.update(arn=f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{physical}")
    elif typ == "aws:dynamodb/table:Table":
        out.update(arn=f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{physical}")
    elif typ == "aws:sns/topic:Topic":
        out.update(arn=f"arn:aws:sns:{REGION}:{ACCOUNT}:{physical}")
    elif typ == "aws:secretsmanager/secret:Secret":
        out.update(arn=f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{physical}-AbCdEf")
    elif typ.startswith("aws:ecs/cluster"):
        out.update(arn=f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{physical}")
    else:
        out.setdefault("arn", f"arn:aws:{service}:{REGION}:{ACCOUNT}:{name}")
    if typ.startswith("aws:ec2/") or typ.startswith("aws:vpc/") or typ.startswith("aws:apigatewayv2/"):
        rid = rid if typ == "aws:apigatewayv2/api:Api" else f"{name}-id"
    return rid, out


@dataclass
class RecordingMocks(pulumi.runtime.Mocks):
    resources: list[Res] = field(default_factory=list)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        rid, outputs = _outputs(args.typ, args.name, dict(args.inputs))
        self.resources.append(Res(args.typ, args.name, dict(args.inputs), outputs, None))
        return rid, outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/test", "userId": "AIDTEST"}
        return {}


class Graph:
    def __init__(self, resources: list[Res]) -> None:
        self.resources = resources

    def of(self, typ: str) -> list[Res]:
        return [r for r in self.resources if r.typ == typ]

    def named(self, typ: str, name: str) -> Res:
        found = [r for r in self.of(typ) if r.name == name]
        assert len(found) == 1, f"{len(found)} resources {typ} named {name}"
        return found[0]

    def by_output(self, typ: str, key: str, value: Any) -> Res:
        found = [r for r in self.of(typ) if r.outputs.get(key) == value]
        assert len(found) == 1, f"{len(found)} resources {typ} with {key}={value}"
        return found[0]


def build(cfg: Any, spec: Any = None, node_key: str = "mfn_cloud:secret") -> Graph:
    """Run the program under mocks; returns once every resource is registered."""
    from infra.platform import Platform

    code = Path(tempfile.mkdtemp(prefix="infra-test-")) / "lambda.zip"
    with zipfile.ZipFile(code, "w") as z:
        z.writestr("functions/__init__.py", "")
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="modelfleet", stack="test", preview=False)

    @pulumi.runtime.test
    def program() -> None:
        Platform("modelfleet", cfg, node_key=node_key, code_zip=str(code), spec=spec)

    program()
    return Graph(mocks.resources)
