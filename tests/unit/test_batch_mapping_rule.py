"""The mapping rule: compile checks, one-row conversion, and the column-wise evaluation agreeing
with the one-row reference on every row (a hypothesis property)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelfleet.batch.mapping_rule import (
    MappingRuleError,
    RowError,
    body_of_row,
    columns_to_body,
    compile_rule,
    row_to_body,
)
from tests.e2e.batch_support import SEED_CSV_RULE  # the seed's csv sample, verbatim


def test_the_seeds_rule_builds_its_body() -> None:
    body = row_to_body(compile_rule(SEED_CSV_RULE), ["1", "2.5", "-3", "4e2", "5"])
    assert body == {
        "data": {"req_data": [{"input5": 1.0, "input4": 2.5, "input3": -3.0, "input2": 400.0, "input1": 5.0}]}
    }


def test_types_convert_and_minus_one_omits() -> None:
    rule = compile_rule(
        {
            "type": "object",
            "properties": {
                "n": {"type": "integer", "index": 0},
                "s": {"type": "string", "index": 1},
                "b": {"type": "boolean", "index": 2},
                "gone": {"type": "number", "index": -1},
                "v": {
                    "type": "array",
                    "items": [{"type": "number", "index": 3}, {"type": "number", "index": -1}],
                },
                "one": {"type": "array", "items": {"type": "number", "index": 3}},
            },
        }
    )
    assert row_to_body(rule, ["7.0", " x ", "Yes", "0.5"]) == {
        "n": 7,
        "s": " x ",
        "b": True,
        "v": [0.5],
        "one": [0.5],
    }


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (["1.5", "a", "true", "1"], "column 0: '1.5' is not an integer"),
        (["1e30", "a", "true", "1"], "column 0: '1e30' is out of the 64-bit integer range"),
        (["1", "a", "maybe", "1"], "column 2: 'maybe' is not a boolean"),
        (["1", "a", "true", "nan"], "column 3: 'nan' is not a finite number"),
        (["1", "a", "true", ""], "column 3: '' is not a number"),
        (["1", "a"], "column 2: the row has only 2 columns"),
    ],
)
def test_bad_cells_name_their_column(row: list[str], reason: str) -> None:
    rule = compile_rule(
        {
            "type": "object",
            "properties": {
                "n": {"type": "integer", "index": 0},
                "s": {"type": "string", "index": 1},
                "b": {"type": "boolean", "index": 2},
                "x": {"type": "number", "index": 3},
            },
        }
    )
    with pytest.raises(RowError) as err:
        row_to_body(rule, row)
    assert str(err.value) == reason


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({"type": "object"}, "mapping_rule: an object needs"),
        ({"type": "array", "items": []}, "mapping_rule: an array needs"),
        ({"type": "number"}, "mapping_rule: a number leaf needs an integer 'index'"),
        ({"type": "number", "index": -2}, "out of range"),
        ({"type": "object", "properties": {"a": {"type": "date", "index": 0}}}, "mapping_rule.properties.a"),
        (
            {"type": "object", "properties": {"a": {"type": "number", "index": -1}}},
            "every request body would be empty",
        ),
        ({"type": "number", "index": True}, "integer 'index'"),
    ],
)
def test_malformed_rules_are_refused_with_where(raw: dict[str, Any], where: str) -> None:
    with pytest.raises(MappingRuleError) as err:
        compile_rule(raw)
    assert where in str(err.value)


leaf_types = st.sampled_from(["number", "integer", "string", "boolean"])


@st.composite
def rules(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    if depth >= 3 or draw(st.booleans()):
        return {"type": draw(leaf_types), "index": draw(st.integers(-1, 4))}
    if draw(st.booleans()):
        names = draw(st.lists(st.text("abcxyz", min_size=1, max_size=3), min_size=1, max_size=3, unique=True))
        return {"type": "object", "properties": {n: draw(rules(depth + 1)) for n in names}}
    return {"type": "array", "items": draw(st.lists(rules(depth + 1), min_size=1, max_size=3))}


cells = st.one_of(
    st.sampled_from(
        ["0", "1", "-2", "3.5", "1e3", "true", "FALSE", "no", "x", "", "nan", " 4 ", "2.0", "1e30"]
    ),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
)


@settings(max_examples=150, deadline=None)
@given(rules(), st.lists(st.lists(cells, min_size=5, max_size=5), min_size=1, max_size=6))
def test_column_wise_evaluation_matches_the_row_reference(raw: dict[str, Any], rows: list[list[str]]) -> None:
    try:
        rule = compile_rule(raw)
    except MappingRuleError:
        return
    columns = {i: np.asarray([r[i] for r in rows], dtype=object) for i in range(5)}
    body, bad = columns_to_body(rule, columns, len(rows))
    for n, row in enumerate(rows):
        try:
            expected = row_to_body(rule, row)
        except RowError:
            assert n in bad
            continue
        assert n not in bad
        assert body_of_row(body, n) == expected
