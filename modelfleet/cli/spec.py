"""Declarative deployment specs (`modelfleet deploy SPEC.yaml`): YAML documents validated by the
API's own pydantic schemas, with every error pointing at the file, line and field.

A document is the API's request body plus `kind` (and, for kinds that serve a model, an optional
`model:` block naming a file to push first instead of a `model_id`)::

    kind: deployment            # the native real-time deployment (POST /api/v1/deployments)
    deployment_id: digits
    model: {path: digits.onnx, name: digits, format: onnx}
    allocations: 2
    max_batch_size: 16

Several documents (`---`) are applied in order. Faces add kinds to `SPEC_KINDS`: each names the
request schema that validates it; the CLI's `deploy` command knows how to apply each kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.deployments import DeploymentCreate
from schemas.models import ModelFormat
from schemas.tensors import Signature

PENDING_MODEL_ID = "pending-upload"  # stands in for the id a `model:` block's push will give


class ModelSource(BaseModel):
    """A model file to push before deploying (the `model:` block)."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1)
    name: str | None = None
    format: ModelFormat | None = None  # from the file's suffix when omitted
    version: str = "1"
    model_id: str | None = None
    signature: Signature | None = None


SPEC_KINDS: dict[str, type[BaseModel]] = {"deployment": DeploymentCreate}


class SpecError(Exception):
    """One or more problems in a spec file, each as `file:line: field: message`."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class Spec:
    kind: str
    body: BaseModel  # the validated request (model_id may be PENDING_MODEL_ID)
    model: ModelSource | None
    source: str  # "file:line" of the document


def format_of(path: str) -> ModelFormat | None:
    suffix = Path(path).suffix.lower()
    return {".onnx": ModelFormat.ONNX, ".pt": ModelFormat.TORCHSCRIPT, ".ts": ModelFormat.TORCHSCRIPT}.get(
        suffix
    )


def _line_of(node: yaml.Node, loc: Sequence[str | int]) -> tuple[int, str]:
    """The line (1-based) of the deepest node along `loc` that exists, and the path reached."""
    reached: list[str] = []
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    child = value if not isinstance(value, yaml.ScalarNode) else key
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        if child is None:
            break
        reached.append(str(part))
        node = child
    return node.start_mark.line + 1, ".".join(reached)


def _field(loc: Sequence[str | int]) -> str:
    return ".".join(str(p) for p in loc) or "(document)"


def _validate(
    model: type[BaseModel], data: dict[str, Any], node: yaml.Node, file: str, prefix: tuple[str, ...] = ()
) -> tuple[BaseModel | None, list[str]]:
    try:
        return model.model_validate(data), []
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = (*prefix, *(p for p in err["loc"]))
            line, _ = _line_of(node, loc)
            problems.append(f"{file}:{line}: {_field(loc)}: {err['msg']}")
        return None, problems


def parse_specs(text: str, file: str = "<spec>") -> list[Spec]:
    """Every document of a spec file, validated; raises `SpecError` listing all problems."""
    try:
        nodes = list(yaml.compose_all(text))
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{file}:{mark.line + 1}" if mark is not None else file
        raise SpecError([f"{where}: not valid YAML: {getattr(e, 'problem', None) or e}"]) from None
    specs: list[Spec] = []
    problems: list[str] = []
    pairs = [(n, d) for n, d in zip(nodes, documents, strict=True) if n is not None]
    if not pairs:
        raise SpecError([f"{file}: no documents"])
    for node, doc in pairs:
        line = node.start_mark.line + 1
        if not isinstance(doc, dict):
            problems.append(f"{file}:{line}: a spec document must be a mapping")
            continue
        data = dict(doc)
        kind = str(data.pop("kind", "deployment"))
        schema = SPEC_KINDS.get(kind)
        if schema is None:
            kline, _ = _line_of(node, ["kind"])
            problems.append(
                f"{file}:{kline}: kind: unknown kind '{kind}'; known: {', '.join(sorted(SPEC_KINDS))}"
            )
            continue
        source: ModelSource | None = None
        if "model" in data:
            raw_model = data.pop("model")
            if not isinstance(raw_model, dict):
                mline, _ = _line_of(node, ["model"])
                problems.append(f"{file}:{mline}: model: must be a mapping with a path")
                continue
            checked, errs = _validate(ModelSource, raw_model, node, file, ("model",))
            problems += errs
            if checked is None:
                continue
            assert isinstance(checked, ModelSource)
            source = checked
            if source.format is None and format_of(source.path) is None:
                mline, _ = _line_of(node, ["model", "path"])
                problems.append(
                    f"{file}:{mline}: model.format: give onnx or torchscript (not known from the suffix)"
                )
                continue
            if "model_id" in data or "versions" in data:
                mline, _ = _line_of(node, ["model"])
                problems.append(f"{file}:{mline}: model: give a model block or model_id/versions, not both")
                continue
            data["model_id"] = source.model_id or PENDING_MODEL_ID
        body, errs = _validate(schema, data, node, file)
        problems += errs
        if body is not None:
            specs.append(Spec(kind, body, source, f"{file}:{line}"))
    if problems:
        raise SpecError(problems)
    return specs


def load_specs(path: Path) -> list[Spec]:
    try:
        text = path.read_text()
    except OSError as e:
        raise SpecError([f"{path}: cannot read: {e.strerror}"]) from None
    return parse_specs(text, str(path))
