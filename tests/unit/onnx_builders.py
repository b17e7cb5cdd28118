"""Small ONNX models written with onnx.helper, for the worker's batching and data port tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def linear(path: Path, batch: int | str = "n", features: int = 4, outputs: int = 3) -> Path:
    """x FLOAT[batch, features] -> y = x @ W + b, FLOAT[batch, outputs] (batch "n" = variable)."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((features, outputs)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(outputs).astype(np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "B"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, outputs])],
        [w, b],
    )
    return _save(graph, path)


def doubler(path: Path) -> Path:
    """x FLOAT[n, t] -> y = 2x, FLOAT[n, t]: requests with different t cannot share a batch."""
    two = numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])],
        "doubler",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "t"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "t"])],
        [two],
    )
    return _save(graph, path)


def lookup(path: Path, rows: int = 10) -> Path:
    """idx INT64[n] -> y = table[idx], FLOAT[n, 3]; an index outside the table fails the run."""
    table = numpy_helper.from_array(np.arange(rows * 3, dtype=np.float32).reshape(rows, 3), "table")
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "idx"], ["y"], axis=0)],
        "lookup",
        [helper.make_tensor_value_info("idx", TensorProto.INT64, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
        [table],
    )
    return _save(graph, path)
