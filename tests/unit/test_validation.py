"""Request tensors checked against model signatures."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelfleet.runtime.errors import ModelRuntimeError, SignatureMismatchError
from modelfleet.runtime.oip import InferTensor, datatype_to_numpy
from modelfleet.runtime.validation import check_inputs, format_spec
from schemas.tensors import DataType, Signature, TensorSpec

SIGNATURE = Signature(
    inputs=[
        TensorSpec(name="input", datatype=DataType.FP32, shape=[-1, 64]),
        TensorSpec(name="mask", datatype=DataType.BOOL, shape=[-1]),
    ],
    outputs=[TensorSpec(name="logits", datatype=DataType.FP32, shape=[-1, 10])],
)


def tensor(name: str, datatype: DataType, shape: tuple[int, ...]) -> InferTensor:
    return InferTensor(name, datatype, shape, np.zeros(shape, dtype=datatype_to_numpy(datatype)))


def test_format_spec() -> None:
    assert format_spec(DataType.FP32, [-1, 64]) == "FP32[-1,64]"
    assert format_spec("BYTES", ()) == "BYTES[]"


def test_valid_inputs_in_signature_order() -> None:
    given_tensors = [tensor("mask", DataType.BOOL, (3,)), tensor("input", DataType.FP32, (3, 64))]
    arrays = check_inputs(SIGNATURE, given_tensors)
    assert list(arrays) == ["input", "mask"]
    assert arrays["input"] is given_tensors[1].data  # already contiguous: no copy
    assert arrays["input"].shape == (3, 64)


def test_single_problem_message() -> None:
    with pytest.raises(SignatureMismatchError) as info:
        check_inputs(
            SIGNATURE, [tensor("input", DataType.FP32, (2, 63)), tensor("mask", DataType.BOOL, (2,))]
        )
    assert str(info.value) == "input 'input': expected FP32[-1,64], given FP32[2,63]"
    assert info.value.details == [
        {"input": "input", "problem": "shape", "expected": "FP32[-1,64]", "given": "FP32[2,63]"}
    ]
    assert isinstance(info.value, ModelRuntimeError)


def test_every_problem_is_reported() -> None:
    given_tensors = [
        tensor("input", DataType.FP64, (2, 64, 1)),
        tensor("extra", DataType.INT64, (1,)),
        tensor("extra", DataType.INT64, (1,)),
    ]
    with pytest.raises(SignatureMismatchError) as info:
        check_inputs(SIGNATURE, given_tensors)
    problems = {(d["input"], d["problem"]) for d in info.value.details}
    assert problems == {
        ("input", "datatype,rank"),
        ("extra", "unknown"),
        ("extra", "duplicate"),
        ("mask", "missing"),
    }
    message = str(info.value)
    assert "input 'input': expected FP32[-1,64], given FP64[2,64,1]" in message
    assert "input 'mask': missing, expected BOOL[-1]" in message
    assert "input 'extra': unknown input" in message


def test_datatype_only_mismatch() -> None:
    with pytest.raises(SignatureMismatchError) as info:
        check_inputs(
            SIGNATURE, [tensor("input", DataType.FP16, (1, 64)), tensor("mask", DataType.BOOL, (1,))]
        )
    assert info.value.details[0]["problem"] == "datatype"
    assert info.value.details[0]["given"] == "FP16[1,64]"


def test_arrays_are_made_contiguous_and_aligned() -> None:
    strided = np.zeros((4, 128), dtype=np.float32)[:, ::2]
    raw = bytearray(4 * 64 + 1)
    unaligned = np.frombuffer(memoryview(raw)[1:], dtype=np.float32).reshape(1, 64)
    swapped = np.zeros((2, 64), dtype=">f4")
    assert not unaligned.flags.aligned and not strided.flags.c_contiguous
    for array in (strided, unaligned, swapped):
        tensors = [
            InferTensor("input", DataType.FP32, array.shape, array),
            tensor("mask", DataType.BOOL, (1,)),
        ]
        ready = check_inputs(SIGNATURE, tensors)["input"]
        assert ready.flags.c_contiguous and ready.flags.aligned and ready.dtype.isnative
        np.testing.assert_array_equal(ready, array)


@settings(max_examples=100, deadline=None, database=None)
@given(
    spec_shape=st.lists(st.integers(-1, 4), max_size=4),
    given_shape=st.lists(st.integers(0, 4), max_size=4),
)
def test_shape_rule(spec_shape: list[int], given_shape: list[int]) -> None:
    signature = Signature(
        inputs=[TensorSpec(name="x", datatype=DataType.INT32, shape=spec_shape)],
        outputs=[TensorSpec(name="y", datatype=DataType.INT32, shape=[-1])],
    )
    ok = len(spec_shape) == len(given_shape) and all(
        s in (-1, g) for s, g in zip(spec_shape, given_shape, strict=True)
    )
    tensors = [tensor("x", DataType.INT32, tuple(given_shape))]
    if ok:
        assert check_inputs(signature, tensors)["x"].shape == tuple(given_shape)
    else:
        with pytest.raises(SignatureMismatchError, match="input 'x': expected INT32"):
            check_inputs(signature, tensors)
