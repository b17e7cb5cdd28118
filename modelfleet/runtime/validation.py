"""Check decoded request tensors against a model signature before they reach a backend."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from modelfleet.runtime.errors import SignatureMismatchError
from modelfleet.runtime.oip import InferTensor
from schemas.tensors import DataType, Signature, TensorSpec

__all__ = ["check_inputs", "format_spec"]


def format_spec(datatype: DataType | str, shape: Sequence[int]) -> str:
    """``FP32[-1,64]``: the datatype name followed by the dimensions."""
    name = datatype.value if isinstance(datatype, DataType) else str(datatype)
    return f"{name}[{','.join(str(dim) for dim in shape)}]"


def _shape_matches(expected: Sequence[int], given: Sequence[int]) -> bool:
    if len(expected) != len(given):
        return False
    return all(want == -1 or want == got for want, got in zip(expected, given, strict=True))


def _ready(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """C-contiguous, aligned and native-endian (copies only when needed)."""
    flags = array.flags
    if flags.c_contiguous and flags.aligned and array.dtype.isnative:
        return array
    return np.array(array, dtype=array.dtype.newbyteorder("="), order="C")


def check_inputs(signature: Signature, tensors: Sequence[InferTensor]) -> dict[str, npt.NDArray[Any]]:
    """Match request tensors to the signature inputs; returns name -> array for the backend.

    Every signature input must be given exactly once, no unknown input may appear, datatypes
    must be equal, ranks equal, and each dimension other than -1 equal. All problems are
    collected into one SignatureMismatchError (message and ``details``).
    """
    specs: dict[str, TensorSpec] = {spec.name: spec for spec in signature.inputs}
    problems: list[str] = []
    details: list[dict[str, Any]] = []
    given: dict[str, InferTensor] = {}

    for tensor in tensors:
        if tensor.name in given:
            problems.append(f"input {tensor.name!r}: given more than once")
            details.append(
                {"input": tensor.name, "problem": "duplicate", "expected": "once", "given": "repeated"}
            )
            continue
        given[tensor.name] = tensor
        spec = specs.get(tensor.name)
        given_text = format_spec(tensor.datatype, tensor.shape)
        if spec is None:
            expected_names = ", ".join(repr(name) for name in specs)
            problems.append(f"input {tensor.name!r}: unknown input, expected one of {expected_names}")
            details.append(
                {
                    "input": tensor.name,
                    "problem": "unknown",
                    "expected": f"one of {expected_names}",
                    "given": given_text,
                }
            )
            continue
        wrong: list[str] = []
        if tensor.datatype != spec.datatype:
            wrong.append("datatype")
        if len(tensor.shape) != len(spec.shape):
            wrong.append("rank")
        elif not _shape_matches(spec.shape, tensor.shape):
            wrong.append("shape")
        if wrong:
            expected_text = format_spec(spec.datatype, spec.shape)
            problems.append(f"input {tensor.name!r}: expected {expected_text}, given {given_text}")
            details.append(
                {
                    "input": tensor.name,
                    "problem": ",".join(wrong),
                    "expected": expected_text,
                    "given": given_text,
                }
            )

    for name, spec in specs.items():
        if name not in given:
            expected_text = format_spec(spec.datatype, spec.shape)
            problems.append(f"input {name!r}: missing, expected {expected_text}")
            details.append({"input": name, "problem": "missing", "expected": expected_text, "given": None})

    if problems:
        raise SignatureMismatchError("; ".join(problems), details)

    return {spec.name: _ready(given[spec.name].data) for spec in signature.inputs}
