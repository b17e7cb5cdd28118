"""Request bodies to model tensors, and model outputs to result lines (pure, numpy only).

A model's inference routes (what ``req_uri`` may name) are ``/`` (the seed's built-in route),
``/infer``, ``/v2/models/{name}/infer`` and ``/v2/models/{name}/versions/{version}/infer``; they
all run the model's one signature.

**CSV bodies.** A body built by the mapping rule feeds the model's inputs in one of two forms:

* ``{"data": {"req_data": [record]}}`` (the seed's sample) — one record per row — or the record
  itself as the body (``{"input": [...]}``);
* if the record's keys are exactly the model's input names, each key feeds its input: a leaf
  is a scalar per row, an array of leaves a vector per row, nested arrays a matrix per row;
* otherwise, if the model has one input, the record's values in the rule's order are that input's
  feature vector (the tabular case: ``input1..input5`` of one ``[batch, 5]`` input).

Every row's value is reshaped to the input's shape without its batch dimension, and cast to its
datatype. A rule that cannot feed the model is refused when the job is created.

**Files.** In ``file`` mode the model must have exactly one input; an object is decoded by its
name: ``.npy`` (numpy, never pickles), ``.json`` (a nested list), anything else as raw bytes for
a ``BYTES`` or ``UINT8`` input. One file is one request: an array with the input's rank holds a
batch of samples, one rank lower a single sample.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from modelfleet.runtime.oip import datatype_to_numpy
from schemas.tensors import DataType, Signature, TensorSpec

__all__ = [
    "BodyError",
    "decode_file",
    "file_result",
    "inference_routes",
    "result_lines",
    "tensors_from_columns",
]

Array = npt.NDArray[Any]


class BodyError(ValueError):
    """A body (or file) that cannot feed the model; the message says why."""


def inference_routes(model_name: str, version: str) -> frozenset[str]:
    return frozenset(
        {
            "/",
            "/infer",
            f"/v2/models/{model_name}/infer",
            f"/v2/models/{model_name}/versions/{version}/infer",
        }
    )


def _record(body: Any) -> Mapping[str, Any]:
    if isinstance(body, Mapping) and set(body) == {"data"} and isinstance(body["data"], Mapping):
        data = body["data"]
        if set(data) == {"req_data"}:
            records = data["req_data"]
            if not isinstance(records, list) or len(records) != 1 or not isinstance(records[0], Mapping):
                raise BodyError("data.req_data must hold exactly one record (an object) per row")
            return records[0]
    if not isinstance(body, Mapping):
        raise BodyError("the request body must be an object")
    return body


def _stack(node: Any, path: str, rows: int) -> Array:
    """A columnar value (column, or nested lists of columns) to one array [rows, ...]."""
    if isinstance(node, np.ndarray):
        return node
    if isinstance(node, list):
        if not node:
            raise BodyError(f"{path} is an empty array")
        parts = [_stack(child, f"{path}[{i}]", rows) for i, child in enumerate(node)]
        if len({p.shape for p in parts}) != 1:
            raise BodyError(f"the items of {path} do not have one shape")
        return np.stack(parts, axis=1)
    raise BodyError(f"{path} is an object where a tensor value was expected")


def _fit(spec: TensorSpec, value: Array, rows: int, what: str) -> Array:
    want = spec.shape[1:] if spec.shape and spec.shape[0] in (-1, rows) else spec.shape
    dtype = datatype_to_numpy(spec.datatype)
    per_row = int(np.prod(value.shape[1:], dtype=np.int64)) if value.ndim > 1 else 1
    fixed = int(np.prod([d for d in want if d >= 0], dtype=np.int64)) if want else 1
    dynamic = sum(1 for d in want if d < 0)
    if dynamic > 1 or (dynamic == 0 and fixed != per_row) or (dynamic == 1 and per_row % max(fixed, 1)):
        raise BodyError(
            f"{what} gives {per_row} value(s) per row but input '{spec.name}' takes shape {spec.shape}"
        )
    shape = [rows, *[d if d >= 0 else per_row // max(fixed, 1) for d in want]]
    if spec.datatype == DataType.BYTES:
        return np.asarray([str(v).encode() for v in value.reshape(-1)], dtype=object).reshape(shape)
    try:
        return value.reshape(shape).astype(dtype, copy=False)
    except ValueError as e:
        raise BodyError(f"{what} does not convert to {spec.datatype.value}: {e}") from None


def tensors_from_columns(body: Any, rows: int, signature: Signature) -> dict[str, Array]:
    """The model inputs of `rows` rows whose body was evaluated column-wise (see mapping_rule)."""
    record = _record(body)
    inputs = {spec.name: spec for spec in signature.inputs}
    if set(record) == set(inputs):
        return {
            name: _fit(inputs[name], _stack(value, f"'{name}'", rows), rows, f"field '{name}'")
            for name, value in record.items()
        }
    if len(inputs) == 1 and not set(record) & set(inputs):
        (spec,) = inputs.values()
        parts = [_stack(v, f"'{k}'", rows).reshape(rows, -1) for k, v in record.items()]
        if not parts:
            raise BodyError("the record has no fields")
        features = np.concatenate([p.astype(np.float64) if p.dtype == bool else p for p in parts], axis=1)
        return {spec.name: _fit(spec, features, rows, "the record's fields")}
    missing = sorted(set(inputs) - set(record))
    extra = sorted(set(record) - set(inputs))
    raise BodyError(
        "the body's fields do not match the model's inputs"
        + (f"; missing: {', '.join(missing)}" if missing else "")
        + (f"; not inputs: {', '.join(extra)}" if extra else "")
    )


# --- files -----------------------------------------------------------------------------------------
def decode_file(name: str, data: bytes, spec: TensorSpec) -> Array:
    """One input file to a batch of samples [k, ...] for `spec` (k = 1 for a single sample)."""
    lower = name.lower()
    if lower.endswith(".npy"):
        try:
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError) as e:
            raise BodyError(f"not a readable .npy file: {e}") from None
    elif lower.endswith(".json"):
        try:
            array = np.asarray(orjson.loads(data))
        except (orjson.JSONDecodeError, ValueError) as e:
            raise BodyError(f"not a JSON array: {e}") from None
        if array.dtype == object:
            raise BodyError("the JSON is not a regular (rectangular) array of numbers")
    elif spec.datatype == DataType.BYTES:
        array = np.asarray([data], dtype=object)
    elif spec.datatype == DataType.UINT8:
        array = np.frombuffer(data, dtype=np.uint8)
    else:
        raise BodyError(f"cannot read '{name}' for a {spec.datatype.value} input (use .npy or .json)")
    rank = len(spec.shape)
    if array.ndim == rank - 1:
        array = array[np.newaxis]
    elif array.ndim != rank:
        raise BodyError(f"the array has shape {list(array.shape)}; input '{spec.name}' takes {spec.shape}")
    for got, want in zip(array.shape[1:], spec.shape[1:], strict=True):
        if want >= 0 and got != want:
            raise BodyError(
                f"the array has shape {list(array.shape)}; input '{spec.name}' takes {spec.shape}"
            )
    result: Array = array
    if spec.datatype == DataType.BYTES:
        return result
    try:
        result = array.astype(datatype_to_numpy(spec.datatype), copy=False)
        return result
    except (TypeError, ValueError) as e:
        raise BodyError(f"the array does not convert to {spec.datatype.value}: {e}") from None


def file_result(source: str, outputs: Mapping[str, Array]) -> bytes:
    return orjson.dumps(
        {"source": source, "outputs": {k: _jsonable(v) for k, v in outputs.items()}},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def _jsonable(value: Array) -> Any:
    if value.dtype == object:
        return [v.decode(errors="replace") if isinstance(v, bytes) else v for v in value.reshape(-1)]
    return value


# --- result lines ----------------------------------------------------------------------------------
def _row_texts(array: Array) -> list[bytes]:
    """Each row of `array` as JSON text, from one orjson call (rows sliced out of its output)."""
    if array.dtype == object or not array.flags.c_contiguous:
        array = np.ascontiguousarray(array) if array.dtype != object else array
    if array.dtype == object or array.ndim > 2:
        return [orjson.dumps(_jsonable(row), option=orjson.OPT_SERIALIZE_NUMPY) for row in array]
    if array.ndim == 1:
        return orjson.dumps(array, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",") if len(array) else []
    if array.shape[1] == 0:
        return [b"[]"] * len(array)
    text = orjson.dumps(array, option=orjson.OPT_SERIALIZE_NUMPY)
    return [b"[" + row + b"]" for row in text[2:-2].split(b"],[")]


def result_lines(row_numbers: Sequence[int], outputs: Mapping[str, Array]) -> bytes:
    """JSON lines ``{"row": n, "outputs": {name: value}}``, one per row, in the given order."""
    names = list(outputs)
    texts = [_row_texts(outputs[name]) for name in names]
    keys = [orjson.dumps(name) for name in names]
    out = []
    for i, row in enumerate(row_numbers):
        fields = b",".join(k + b":" + t[i] for k, t in zip(keys, texts, strict=True))
        out.append(b'{"row":%d,"outputs":{%b}}\n' % (row, fields))
    return b"".join(out)
