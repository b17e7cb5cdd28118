"""One task's rows through a real ONNX model: batched results in row order, bad rows in the error
lines (the rest unaffected), malformed records parsed one by one (quoted newlines inside them),
and non-UTF-8 chunks failing the task as a whole (a poison input)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from modelfleet.batch.execute import TaskError, run_csv_chunk, run_files
from modelfleet.batch.mapping_rule import compile_rule
from modelfleet.batch.planner import line_starts
from modelfleet.runtime.backends import LoadedModel, load_model
from schemas.tensors import DataType, Signature, TensorSpec
from tests.e2e.batch_support import SEED_CSV_RULE, five_input_model, npy_bytes

WEIGHTS = np.array([5, 4, 3, 2, 1])  # the seed's rule: input5 <- column 0 ... input1 <- column 4


@pytest.fixture(scope="module")
def five(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    path = five_input_model(tmp_path_factory.mktemp("five") / "five.onnx")
    return load_model("onnx", path, None, 1)


def _lines(data: bytes) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in data.splitlines()]


def test_rows_run_batched_in_order_and_bad_rows_are_reported(five: LoadedModel) -> None:
    data = b"1,2,3,4,5\n1,x,3,4,5\n0,0,0,0,1\n\n2,2,2,2,2\n"
    result = run_csv_chunk(data, compile_rule(SEED_CSV_RULE), five, row_start=100, rows=5)
    assert [(r["row"], r["outputs"]["y"]) for r in _lines(result.results)] == [
        (100, 35.0),
        (102, 1.0),
        (104, 30.0),
    ]
    assert [r["row"] for r in _lines(result.errors)] == [101, 103]
    assert (result.rows_ok, result.rows_failed) == (3, 2)


def test_a_malformed_record_fails_only_itself(five: LoadedModel) -> None:
    data = b"1,2,3,4,5\n1,1,1,1,1,9,9\n1,x,1,1,1\n1,1,1,1,1\n"
    result = run_csv_chunk(data, compile_rule(SEED_CSV_RULE), five, row_start=0, rows=4)
    assert [r["row"] for r in _lines(result.results)] == [0, 1, 3]  # extra columns are not read
    assert [r["row"] for r in _lines(result.errors)] == [2]


def test_a_quoted_newline_stays_inside_its_record(five: LoadedModel) -> None:
    data = b'1,2,3,4,5,"a review\nover two lines"\n1,1,1,1,1,short\n'
    assert len(line_starts(data)) == 2  # as the planner counts them
    result = run_csv_chunk(data, compile_rule(SEED_CSV_RULE), five, row_start=0, rows=2)
    assert [(r["row"], r["outputs"]["y"]) for r in _lines(result.results)] == [(0, 35.0), (1, 15.0)]


def test_an_unterminated_quote_fails_the_record_it_opens(five: LoadedModel) -> None:
    """A quote that never closes runs to the end of the data, as in any CSV parser: the planner
    counts it as one record, which fails with its reason; the records before it are unaffected."""
    data = b'1,2,3,4,5\n"unterminated,1,1,1,1\n1,1,1,1,1\n'
    rows = len(line_starts(data))
    assert rows == 2
    result = run_csv_chunk(data, compile_rule(SEED_CSV_RULE), five, row_start=0, rows=rows)
    assert [r["row"] for r in _lines(result.results)] == [0]
    assert [r["row"] for r in _lines(result.errors)] == [1]


def test_a_large_chunk_matches_the_reference(five: LoadedModel) -> None:
    rows = np.random.default_rng(0).integers(-50, 50, size=(20_000, 5))
    data = "\n".join(",".join(str(v) for v in r) for r in rows).encode() + b"\n"
    result = run_csv_chunk(data, compile_rule(SEED_CSV_RULE), five, row_start=0, rows=len(rows))
    got = np.array([r["outputs"]["y"] for r in _lines(result.results)])
    assert result.rows_failed == 0 and np.allclose(got, rows @ WEIGHTS)


def test_non_utf8_fails_the_task(five: LoadedModel) -> None:
    with pytest.raises(TaskError, match="not UTF-8"):
        run_csv_chunk(b"\xff\xfe,1,1,1,1\n", compile_rule(SEED_CSV_RULE), five, row_start=0, rows=1)


def test_files_of_one_shape_run_together(tmp_path: Path) -> None:
    from onnx import TensorProto, helper, save_model

    graph = helper.make_graph(
        [helper.make_node("Mul", ["input", "two"], ["s"])],
        "double",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, ["batch", 3])],
        initializer=[helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])],
    )
    path = tmp_path / "double.onnx"
    save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))
    model = load_model("onnx", path, None, 1)
    files = [
        ("s3://b/a.npy", "a.npy", npy_bytes(np.array([1, 2, 3], dtype=np.float32))),
        ("s3://b/b.json", "b.json", b"[[1, 1, 1], [2, 2, 2]]"),
        ("s3://b/c.json", "c.json", b"[1, 2]"),
    ]
    out = run_files(files, model)
    assert orjson.loads(out.results["a.npy"])["outputs"]["s"] == [[2.0, 4.0, 6.0]]
    assert orjson.loads(out.results["b.json"])["outputs"]["s"] == [[2.0, 2.0, 2.0], [4.0, 4.0, 4.0]]
    assert "c.json" in out.errors


class RefusesNegatives:
    """A model (the LoadedModel protocol) that sums its row and refuses any batch holding a
    negative value, as a model with input checks does: its slice re-runs row by row."""

    signature = Signature(
        inputs=[TensorSpec(name="x", datatype=DataType.FP32, shape=[-1, 2])],
        outputs=[TensorSpec(name="s", datatype=DataType.FP32, shape=[-1])],
    )

    def run(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        x = inputs["x"]
        if (x < 0).any():
            raise ValueError("negative input")
        return {"s": x.sum(axis=1)}

    def close(self) -> None:
        pass


def test_rows_the_model_refuses_and_rows_that_do_not_convert_both_fail_alone() -> None:
    rule = compile_rule(
        {
            "type": "object",
            "properties": {
                "x": {"type": "array", "items": [{"type": "number", "index": i} for i in range(2)]}
            },
        }
    )
    data = b"1,2\n-1,5\nx,1\n3,4\n5,-6\n7,8\n"
    result = run_csv_chunk(data, rule, RefusesNegatives(), row_start=10, rows=6)
    assert [(r["row"], r["outputs"]["s"]) for r in _lines(result.results)] == [
        (10, 3.0),
        (13, 7.0),
        (15, 15.0),
    ]
    errors = {r["row"]: r["error"] for r in _lines(result.errors)}
    assert sorted(errors) == [11, 12, 14]
    assert "negative input" in str(errors[11]) and "negative input" in str(errors[14])
    assert (result.rows_ok, result.rows_failed) == (3, 3)
