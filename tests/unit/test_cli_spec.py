"""Deployment specs: validated by the API's schemas, every error at its file, line and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelfleet.cli import main
from modelfleet.cli.output import Exit
from modelfleet.cli.spec import PENDING_MODEL_ID, SpecError, parse_specs
from schemas.deployments import DeploymentCreate


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as e:
        parse_specs(textwrap.dedent(text), "spec.yaml")
    return e.value.problems


def test_a_valid_spec_with_a_model_block_waits_for_the_push() -> None:
    [spec] = parse_specs(
        textwrap.dedent(
            """\
            kind: deployment
            deployment_id: digits
            model: {path: digits.onnx, name: digits}
            allocations: 2
            max_batch_size: 16
            """
        ),
        "spec.yaml",
    )
    assert spec.kind == "deployment"
    assert isinstance(spec.body, DeploymentCreate)
    assert spec.body.model_id == PENDING_MODEL_ID
    assert spec.body.allocations == 2 and spec.body.max_batch_size == 16
    assert spec.model is not None and spec.model.path == "digits.onnx"


def test_errors_name_the_line_and_field() -> None:
    found = problems(
        """\
        kind: deployment
        deployment_id: digits
        model_id: m1
        threads_per_allocation: 3
        alocations: 2
        """
    )
    assert any(p.startswith("spec.yaml:4: threads_per_allocation:") and "power of 2" in p for p in found), (
        found
    )
    assert any(p.startswith("spec.yaml:5: alocations:") and "not permitted" in p for p in found), found


def test_nested_errors_point_inside_lists() -> None:
    found = problems(
        """\
        deployment_id: ab
        versions:
          - model_id: m1
            weight: 50
          - model_id: m2
            weight: 150
        """
    )
    assert any(p.startswith("spec.yaml:6: versions.1.weight:") for p in found), found


def test_a_whole_document_rule_points_at_the_document() -> None:
    found = problems(
        """\
        deployment_id: ab
        allocations: 1
        """
    )
    assert found == ["spec.yaml:1: (document): Value error, give exactly one of model_id or versions"]


def test_unknown_kind_and_bad_yaml_and_later_documents() -> None:
    assert problems("kind: teleport\ndeployment_id: a\n") == [
        "spec.yaml:1: kind: unknown kind 'teleport'; known: deployment"
    ]
    assert problems("deployment_id: [a\n")[0].startswith("spec.yaml:2: not valid YAML")
    found = problems("deployment_id: a\nmodel_id: m\n---\ndeployment_id: B!\nmodel_id: m\n")
    assert len(found) == 1 and found[0].startswith("spec.yaml:4: deployment_id:"), found


def test_a_model_block_needs_a_known_format() -> None:
    found = problems("deployment_id: a\nmodel:\n  path: weights.bin\n")
    assert found == ["spec.yaml:3: model.format: give onnx or torchscript (not known from the suffix)"]


@given(
    position=st.integers(min_value=0, max_value=3),
    allocations=st.one_of(st.integers(min_value=65, max_value=10**6), st.integers(max_value=0)),
)
def test_an_out_of_range_value_is_reported_on_its_own_line(position: int, allocations: int) -> None:
    lines = ["deployment_id: a", "model_id: m", "priority: normal", "queue_capacity: 10"]
    lines.insert(position, f"allocations: {allocations}")
    with pytest.raises(SpecError) as e:
        parse_specs("\n".join(lines) + "\n", "s.yaml")
    assert e.value.problems == [e.value.problems[0]]
    assert e.value.problems[0].startswith(f"s.yaml:{position + 1}: allocations:")


def test_the_cli_validates_without_a_platform(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("deployment_id: a\nmodel_id: m\n")
    assert main(["deploy", str(good), "--validate-only"]) == Exit.OK
    bad = tmp_path / "bad.yaml"
    bad.write_text("deployment_id: a\nmodel_id: m\npriority: urgent\n")
    assert main(["deploy", str(bad), "--validate-only"]) == Exit.USAGE
    assert f"{bad}:3: priority:" in capsys.readouterr().err.replace("\n", "")
    assert main(["deploy", str(tmp_path / "missing.yaml"), "--validate-only"]) == Exit.USAGE
