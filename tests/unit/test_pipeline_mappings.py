"""Inputs and outputs mappings: checks at deployment time, resolution at trigger time (400s)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from modelfleet.control.errors import InvalidRequest
from modelfleet.faces.pipelines.mappings import check_mappings, resolve_inputs
from schemas.pipelines import DataType, ExecutionRule, InputSource, IoSpec, MappingType, OutputDestination

X = IoSpec(name="x", data_type=DataType.NUMBER)
Y = IoSpec(name="y", data_type=DataType.NUMBER, is_required=False)
S = IoSpec(name="s", data_type=DataType.STRING, default_value="hi")
OUT = IoSpec(name="total", data_type=DataType.NUMBER)
EP = ExecutionRule.ENDPOINT


def test_an_unmapped_input_is_an_endpoint_input_of_its_name() -> None:
    kwargs, ios = resolve_inputs([X, Y, S], [], {"x": 2}, {}, EP)
    assert kwargs == {"x": 2, "s": "hi"}  # y is optional and absent: left out
    assert [i.mapping_type for i in ios] == [MappingType.ENDPOINT] * 3


def test_a_missing_required_input_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="'x' is required"):
        resolve_inputs([X], [], {}, {}, EP)
    # the mapping's is_required overrides the pipeline's
    kwargs, _ = resolve_inputs(
        [X], [InputSource(pipeline_input_name="x", endpoint_input_name="x", is_required=False)], {}, {}, EP
    )
    assert kwargs == {}


def test_defaults_come_from_the_mapping_then_the_pipeline() -> None:
    m = [InputSource(pipeline_input_name="x", endpoint_input_name="in_x", default_value=7)]
    assert resolve_inputs([X, S], m, {}, {}, EP)[0] == {"x": 7, "s": "hi"}
    assert resolve_inputs([X, S], m, {"in_x": 1, "s": "yo"}, {}, EP)[0] == {"x": 1, "s": "yo"}


def test_constants_environment_variables_datastore_and_null() -> None:
    m = [
        InputSource(pipeline_input_name="x", constant_value=3),
        InputSource(pipeline_input_name="s", environment_variable_name="GREETING"),
        InputSource(pipeline_input_name="y", is_null=True),
    ]
    kwargs, ios = resolve_inputs([X, Y, S], m, {}, {"GREETING": "hello"}, EP)
    assert kwargs == {"x": 3, "s": "hello"}
    assert [i.mapping_type for i in ios] == [
        MappingType.CONSTANT,
        MappingType.NULL,
        MappingType.ENVIRONMENT_VARIABLE,
    ]
    with pytest.raises(InvalidRequest, match="not set"):
        resolve_inputs([X, Y, S], m, {}, {}, EP)
    f = IoSpec(name="f", data_type=DataType.FILE)
    _, ios = resolve_inputs(
        [f], [InputSource(pipeline_input_name="f", datastore_path="in/a.csv")], {}, {}, EP
    )
    assert ios[0].mapping_type == MappingType.DATASTORE and ios[0].mapping_value == {
        "datastore_path": "in/a.csv"
    }


def test_unknown_and_mistyped_inputs_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="unknown input"):
        resolve_inputs([X], [], {"x": 1, "z": 2}, {}, EP)
    with pytest.raises(InvalidRequest, match="must be of type number"):
        resolve_inputs([X], [], {"x": "one"}, {}, EP)
    with pytest.raises(InvalidRequest, match="must be of type number"):
        resolve_inputs([X], [], {"x": True}, {}, EP)


def test_a_mapping_has_one_source_and_defaults_only_for_endpoint_inputs() -> None:
    with pytest.raises(ValidationError, match="more than one source"):
        InputSource(pipeline_input_name="x", constant_value=1, endpoint_input_name="x")
    with pytest.raises(ValidationError, match="only apply to"):
        InputSource(pipeline_input_name="x", constant_value=1, is_required=True)
    with pytest.raises(ValidationError, match="more than one destination"):
        OutputDestination(pipeline_output_name="o", datastore_path="a", is_null=True)


def test_deployment_mappings_name_declared_inputs_and_periodic_ones_have_no_endpoint() -> None:
    with pytest.raises(InvalidRequest, match="not a pipeline input"):
        check_mappings([X], [OUT], [InputSource(pipeline_input_name="nope", constant_value=1)], [], EP)
    with pytest.raises(InvalidRequest, match="not a pipeline output"):
        check_mappings([X], [OUT], [], [OutputDestination(pipeline_output_name="nope")], EP)
    with pytest.raises(InvalidRequest, match="mapped twice"):
        check_mappings([X], [OUT], [InputSource(pipeline_input_name="x", constant_value=1)] * 2, [], EP)
    periodic = ExecutionRule.PERIODIC
    with pytest.raises(InvalidRequest, match="no endpoint inputs"):
        check_mappings(
            [X], [OUT], [InputSource(pipeline_input_name="x", endpoint_input_name="x")], [], periodic
        )
    with pytest.raises(InvalidRequest, match="must map it"):
        check_mappings([X], [OUT], [], [], periodic)
    check_mappings([X, Y], [OUT], [InputSource(pipeline_input_name="x", constant_value=1)], [], periodic)


def test_environment_variables_are_read_as_the_inputs_type() -> None:
    m = [InputSource(pipeline_input_name="x", environment_variable_name="N")]
    assert resolve_inputs([X], m, {}, {"N": "42"}, EP)[0] == {"x": 42}
    assert resolve_inputs([X], m, {}, {"N": "2.5"}, EP)[0] == {"x": 2.5}
    with pytest.raises(InvalidRequest, match="not a number"):
        resolve_inputs([X], m, {}, {"N": "many"}, EP)
    b = IoSpec(name="b", data_type=DataType.BOOLEAN)
    assert resolve_inputs(
        [b], [InputSource(pipeline_input_name="b", environment_variable_name="B")], {}, {"B": "true"}, EP
    )[0] == {"b": True}
