"""Open Inference Protocol v2 codec, including interop with tritonclient's own HTTP codec."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tritonclient.http import InferInput, InferRequestedOutput, InferResult
from tritonclient.http._utils import _get_inference_request

from modelfleet.runtime.errors import ModelRuntimeError, RequestDecodeError
from modelfleet.runtime.oip import (
    InferRequest,
    RequestedOutput,
    datatype_to_numpy,
    decode_infer_request,
    encode_infer_response,
    numpy_to_datatype,
)
from schemas.tensors import DataType

NUMERIC = [dt for dt in DataType if dt is not DataType.BYTES]


def triton_body(
    arrays: dict[str, np.ndarray],
    binary_inputs: bool | dict[str, bool],
    outputs: list[InferRequestedOutput] | None = None,
    request_id: str = "req-1",
) -> tuple[bytes, int | None]:
    """A request body built by tritonclient itself (no server involved)."""
    inputs = []
    for name, array in arrays.items():
        binary = binary_inputs if isinstance(binary_inputs, bool) else binary_inputs[name]
        infer_input = InferInput(name, list(array.shape), numpy_to_datatype(array.dtype).value)
        infer_input.set_data_from_numpy(array, binary_data=binary)
        inputs.append(infer_input)
    body, json_size = _get_inference_request(
        inputs=inputs,
        request_id=request_id,
        outputs=outputs,
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=0,
        timeout=None,
        custom_parameters=None,
    )
    return (body if isinstance(body, bytes) else body.encode()), json_size


def respond(request: InferRequest, outputs: dict[str, np.ndarray]) -> tuple[InferResult, bytes, int | None]:
    body, header_length = encode_infer_response(
        "digits", "3", request.id, outputs, request.outputs, request.binary_outputs_default
    )
    return (
        InferResult.from_response_body(body, verbose=False, header_length=header_length),
        body,
        header_length,
    )


def as_bytes_array(values: list[bytes], shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out.reshape(shape)


SAMPLES: dict[str, np.ndarray] = {
    "FP32": np.arange(12, dtype=np.float32).reshape(3, 4) / np.float32(7),
    "INT64": np.array([[-(2**62), 0, 5], [7, 2**40, -1]], dtype=np.int64),
    "BYTES": as_bytes_array([b"alpha", b"", "\u00e9t\u00e9".encode(), b"x" * 300], (2, 2)),
}


@pytest.mark.parametrize("binary_out", [True, False], ids=["out-binary", "out-json"])
@pytest.mark.parametrize("binary_in", [True, False], ids=["in-binary", "in-json"])
@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_tritonclient_roundtrip(kind: str, binary_in: bool, binary_out: bool) -> None:
    array = SAMPLES[kind]
    body, json_size = triton_body(
        {"x": array}, binary_in, outputs=[InferRequestedOutput("y", binary_data=binary_out)]
    )
    assert (json_size is not None) == binary_in

    request = decode_infer_request(body, json_size)
    assert request.id == "req-1"
    [tensor] = request.inputs
    assert (tensor.name, tensor.datatype, tensor.shape) == ("x", DataType(kind), array.shape)
    assert tensor.data.dtype == datatype_to_numpy(kind)
    np.testing.assert_array_equal(tensor.data, array)
    assert request.outputs == [RequestedOutput("y", binary_out)]

    result, _, header_length = respond(request, {"y": tensor.data, "unrequested": np.zeros(3)})
    assert (header_length is not None) == binary_out
    got = result.as_numpy("y")
    assert result.as_numpy("unrequested") is None
    assert got.shape == array.shape
    if kind == "BYTES" and not binary_out:
        # tritonclient gives JSON BYTES back as str objects, binary ones as bytes.
        assert got.tolist() == [[b.decode() for b in row] for row in array.tolist()]
    else:
        assert got.dtype == (object if kind == "BYTES" else array.dtype)
        np.testing.assert_array_equal(got, array)
    response = result.get_response()
    assert response["model_name"] == "digits" and response["model_version"] == "3"
    assert response["id"] == "req-1"


def test_tritonclient_mixed_inputs_and_default_binary_outputs() -> None:
    arrays: dict[str, np.ndarray] = {
        "a": np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3),
        "b": np.array([1, 2, 3], dtype=np.int64),
        "c": as_bytes_array([b"\x00\xff", b"zz"], (2,)),
        "d": np.array([[True, False]]),
    }
    body, json_size = triton_body(arrays, {"a": True, "b": False, "c": True, "d": False})
    request = decode_infer_request(body, json_size)
    assert [t.name for t in request.inputs] == list(arrays)
    for tensor in request.inputs:
        np.testing.assert_array_equal(tensor.data, arrays[tensor.name])
    # No outputs listed: tritonclient asks for every output in binary.
    assert request.outputs == [] and request.binary_outputs_default is True
    outputs = {t.name + "_out": t.data for t in request.inputs}
    result, _, header_length = respond(request, outputs)
    assert header_length is not None
    for name, array in outputs.items():
        np.testing.assert_array_equal(result.as_numpy(name), array)


def test_binary_inputs_are_zero_copy_views_of_the_body() -> None:
    array = np.arange(1000, dtype=np.float32).reshape(10, 100)
    body, json_size = triton_body({"x": array}, True)
    tensor = decode_infer_request(body, json_size).inputs[0]
    assert np.shares_memory(tensor.data, np.frombuffer(body, dtype=np.uint8))


def test_json_response_layout() -> None:
    body, header_length = encode_infer_response(
        "m",
        None,
        None,
        {"p": np.array([[0.5, 0.25]], dtype=np.float32), "k": np.array([3], dtype=np.int64)},
        [RequestedOutput("k", False), RequestedOutput("p", False)],
        binary_outputs_default=True,
    )
    assert header_length is None
    assert orjson.loads(body) == {
        "model_name": "m",
        "outputs": [
            {"name": "k", "datatype": "INT64", "shape": [1], "data": [3]},
            {"name": "p", "datatype": "FP32", "shape": [1, 2], "data": [0.5, 0.25]},
        ],
    }


def test_binary_response_layout() -> None:
    logits = np.array([[1.0, -2.0]], dtype=np.float32)
    names = as_bytes_array([b"ab", b"c"], (2,))
    body, header_length = encode_infer_response(
        "m", "1", "id-9", {"logits": logits, "names": names}, [], binary_outputs_default=True
    )
    assert header_length is not None
    header = orjson.loads(body[:header_length])
    assert header["id"] == "id-9" and header["model_version"] == "1"
    assert [o["parameters"]["binary_data_size"] for o in header["outputs"]] == [8, 4 + 2 + 4 + 1]
    assert (
        body[header_length:] == logits.tobytes() + struct.pack("<I", 2) + b"ab" + struct.pack("<I", 1) + b"c"
    )


@pytest.mark.parametrize("binary", [True, False])
def test_big_endian_and_strided_outputs(binary: bool) -> None:
    outputs = {
        "be": np.arange(6, dtype=">i4").reshape(2, 3),
        "strided": np.arange(12, dtype=np.float64).reshape(3, 4)[:, ::2],
        "half": np.array([0.5, -2.0], dtype=np.float16),
    }
    body, header_length = encode_infer_response("m", None, None, outputs, [], binary)
    result = InferResult.from_response_body(body, verbose=False, header_length=header_length)
    for name, array in outputs.items():
        got = result.as_numpy(name)
        assert got.shape == array.shape and got.dtype == array.dtype.newbyteorder("=")
        np.testing.assert_array_equal(got, array)


def test_non_utf8_bytes_output_falls_back_to_binary() -> None:
    out = as_bytes_array([b"\xff\xfe"], (1,))
    body, header_length = encode_infer_response("m", None, None, {"o": out}, [], False)
    assert header_length is not None
    result = InferResult.from_response_body(body, verbose=False, header_length=header_length)
    np.testing.assert_array_equal(result.as_numpy("o"), out)


def test_unknown_requested_output_is_refused() -> None:
    with pytest.raises(RequestDecodeError, match="'nope'"):
        encode_infer_response("m", None, None, {"y": np.zeros(1)}, [RequestedOutput("nope", True)], False)


def test_unsupported_output_dtype() -> None:
    with pytest.raises(ModelRuntimeError, match="'c'"):
        encode_infer_response("m", None, None, {"c": np.zeros(2, dtype=np.complex64)}, [], False)


def test_request_level_binary_default_and_nested_json() -> None:
    doc = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3.5, 4]]}],
        "outputs": [{"name": "a"}, {"name": "b", "parameters": {"binary_data": False}}],
        "parameters": {"binary_data_output": True, "custom": 1},
    }
    request = decode_infer_request(orjson.dumps(doc), None)
    assert request.id is None and request.parameters["custom"] == 1
    np.testing.assert_array_equal(request.inputs[0].data, [[1, 2], [3.5, 4]])
    assert request.outputs == [RequestedOutput("a", True), RequestedOutput("b", False)]


def test_datatype_maps() -> None:
    for datatype in DataType:
        assert numpy_to_datatype(datatype_to_numpy(datatype)) is datatype
    assert numpy_to_datatype(np.dtype("S3")) is DataType.BYTES
    assert numpy_to_datatype(np.dtype(">f4")) is DataType.FP32
    with pytest.raises(ValueError):
        numpy_to_datatype(np.complex128)
    with pytest.raises(ValueError):
        datatype_to_numpy("BF16")


def _input(**fields: Any) -> dict[str, Any]:
    return {"name": "x", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0]} | fields


BAD_JSON_REQUESTS: list[tuple[object, str]] = [
    ([1, 2], "must be an object"),
    ({}, "'inputs'"),
    ({"inputs": []}, "'inputs'"),
    ({"inputs": [_input(name=5)]}, "'name'"),
    ({"inputs": [_input(datatype="BF16")]}, "input 'x': unknown datatype 'BF16'"),
    ({"inputs": [_input(datatype=5)]}, "input 'x': unknown datatype 5"),
    ({"inputs": [_input(shape=[-1])]}, "input 'x': 'shape'"),
    ({"inputs": [_input(shape=[True, 2])]}, "input 'x': 'shape'"),
    ({"inputs": [_input(shape=[3])]}, "input 'x': 'data' has 2 elements but shape [3] needs 3"),
    ({"inputs": [_input(shape=[2, 2], data=[[1.0, 2.0], [3.0]])]}, "input 'x'"),
    ({"inputs": [_input(), _input()]}, "input 'x' appears more than once"),
    ({"inputs": [_input(data=[1.0, None])]}, "input 'x': FP32 'data' must hold numbers"),
    ({"inputs": [_input(data=[1.0, "2"])]}, "input 'x': FP32 'data' must hold numbers, got strings"),
    ({"inputs": [_input(data=[True, False])]}, "input 'x': FP32 'data' must hold numbers, got booleans"),
    ({"inputs": [_input(datatype="INT8", data=[1, 300])]}, "input 'x': 'data' has values outside"),
    ({"inputs": [_input(datatype="INT64", data=[1, 2.5])]}, "input 'x': INT64 'data' must hold integers"),
    ({"inputs": [_input(datatype="BOOL", data=[1, 0])]}, "input 'x': BOOL 'data' must hold booleans"),
    ({"inputs": [_input(datatype="BYTES", data=["a", 3])]}, "input 'x': BYTES 'data' must hold strings"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}, "input 'x' has neither"),
    ({"inputs": [_input(parameters={"binary_data_size": 8})]}, "input 'x' has both"),
    ({"inputs": [_input(parameters={"shared_memory_region": "r"})]}, "input 'x': shared-memory"),
    ({"inputs": [_input()], "id": 7}, "'id'"),
    ({"inputs": [_input()], "parameters": {"binary_data_output": "yes"}}, "binary_data_output"),
    ({"inputs": [_input()], "outputs": [{"name": "y"}, {"name": "y"}]}, "output 'y' is requested more"),
    ({"inputs": [_input()], "outputs": [{"name": "y", "parameters": {"binary_data": 1}}]}, "'binary_data'"),
    ({"inputs": [_input()], "outputs": [{"name": "y", "parameters": {"classification": 3}}]}, "classif"),
]


@pytest.mark.parametrize(("doc", "message"), BAD_JSON_REQUESTS)
def test_malformed_json_requests(doc: object, message: str) -> None:
    with pytest.raises(RequestDecodeError) as info:
        decode_infer_request(orjson.dumps(doc), None)
    assert message in str(info.value)


def test_malformed_json_text() -> None:
    with pytest.raises(RequestDecodeError, match="malformed"):
        decode_infer_request(b'{"inputs": [', None)
    with pytest.raises(RequestDecodeError, match="must be an object"):
        decode_infer_request(b'"just a string"', None)


def test_binary_input_without_header_is_refused() -> None:
    doc = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 4}}]}
    with pytest.raises(RequestDecodeError, match="input 'x' has 'binary_data_size' but"):
        decode_infer_request(orjson.dumps(doc), None)


def _binary_request(size: int, payload: bytes, datatype: str) -> tuple[bytes, int]:
    tensor = {"name": "x", "datatype": datatype, "shape": [2], "parameters": {"binary_data_size": size}}
    header = orjson.dumps({"inputs": [tensor]})
    return header + payload, len(header)


@pytest.mark.parametrize(
    ("size", "payload", "datatype", "message"),
    [
        (4, b"\0" * 4, "FP32", "binary_data_size 4 does not match FP32[2] (8 bytes)"),
        (8, b"\0" * 4, "FP32", "exceeds the 4 bytes left"),
        (8, b"\0" * 12, "FP32", "4 bytes of binary data no input claims"),
        (8, b"\0" * 8, "BF16", "input 'x': unknown datatype 'BF16'"),
        (6, struct.pack("<I", 9) + b"ab", "BYTES", "BYTES element 0 claims 9 bytes"),
        (3, b"abc", "BYTES", "ends before element 0"),
        (14, (struct.pack("<I", 1) + b"a") * 2 + b"tail", "BYTES", "bytes after 2 elements"),
    ],
)
def test_malformed_binary_requests(size: int, payload: bytes, datatype: str, message: str) -> None:
    body, header_length = _binary_request(size, payload, datatype)
    with pytest.raises(RequestDecodeError) as info:
        decode_infer_request(body, header_length)
    assert message in str(info.value)
    if "claims" not in message:
        assert "input 'x'" in str(info.value)


def test_header_length_outside_body() -> None:
    with pytest.raises(RequestDecodeError, match="Inference-Header-Content-Length 99"):
        decode_infer_request(b"{}", 99)


def test_max_elements() -> None:
    doc = {"inputs": [_input(shape=[10, 10], data=[0.0] * 100), _input(name="y", shape=[1], data=[1.0])]}
    body = orjson.dumps(doc)
    assert len(decode_infer_request(body, None, max_elements=101).inputs) == 2
    with pytest.raises(RequestDecodeError, match=r"more than 100 tensor elements.*input 'y'"):
        decode_infer_request(body, None, max_elements=100)
    huge = orjson.dumps({"inputs": [_input(shape=[100_000, 100_000, 100_000], data=[])]})
    with pytest.raises(RequestDecodeError, match="tensor elements"):
        decode_infer_request(huge, None)


def test_empty_tensors() -> None:
    doc = {"inputs": [_input(shape=[0, 3], data=[]), _input(name="b", datatype="BYTES", shape=[0], data=[])]}
    request = decode_infer_request(orjson.dumps(doc), None)
    assert request.inputs[0].data.shape == (0, 3) and request.inputs[0].data.dtype == np.float32
    assert request.inputs[1].data.shape == (0,)
    body, header_length = encode_infer_response(
        "m", None, None, {"a": request.inputs[0].data}, [RequestedOutput("a", True)], False
    )
    result = InferResult.from_response_body(body, verbose=False, header_length=header_length)
    assert result.as_numpy("a").shape == (0, 3)


# --------------------------------------------------------------------------------------------
# Property: anything tritonclient encodes, we decode; anything we encode, tritonclient decodes.
# --------------------------------------------------------------------------------------------

SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


@st.composite
def tensors(draw: st.DrawFn, binary: bool) -> np.ndarray:
    datatype = draw(st.sampled_from(list(DataType)))
    shape = draw(SHAPES)
    if datatype is DataType.BYTES:
        size = int(np.prod(shape))
        item = st.binary(max_size=8) if binary else st.text(max_size=6).map(str.encode)
        return as_bytes_array(draw(st.lists(item, min_size=size, max_size=size)), shape)
    dtype = datatype_to_numpy(datatype)
    elements = None
    if dtype.kind == "f":
        elements = hnp.from_dtype(dtype, allow_nan=binary, allow_infinity=binary, allow_subnormal=True)
    return draw(hnp.arrays(dtype, shape, elements=elements))


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(binary_in=st.booleans(), binary_out=st.booleans(), data=st.data())
def test_roundtrip_property(binary_in: bool, binary_out: bool, data: st.DataObject) -> None:
    # JSON cannot carry NaN/inf, nor (as requests) non-UTF-8 BYTES: those only in all-binary cases.
    exact_only = not (binary_in and binary_out)
    count = data.draw(st.integers(1, 3))
    arrays = {f"t{i}": data.draw(tensors(binary=not exact_only)) for i in range(count)}
    outputs = [InferRequestedOutput(name, binary_data=binary_out) for name in arrays]
    body, json_size = triton_body(arrays, binary_in, outputs=outputs)

    request = decode_infer_request(body, json_size)
    assert [t.name for t in request.inputs] == list(arrays)
    for tensor in request.inputs:
        original = arrays[tensor.name]
        assert tensor.shape == original.shape
        assert tensor.datatype is numpy_to_datatype(original.dtype)
        if original.dtype == object:
            assert tensor.data.tolist() == original.tolist()
        else:
            assert tensor.data.dtype == original.dtype
            assert tensor.data.tobytes() == original.tobytes()

    result, _, header_length = respond(request, {t.name: t.data for t in request.inputs})
    assert (header_length is not None) == binary_out
    for name, original in arrays.items():
        got = result.as_numpy(name)
        assert got.shape == original.shape
        if original.dtype == object:
            expected = original if binary_out else np.vectorize(bytes.decode, otypes=[object])(original)
            assert got.tolist() == expected.tolist()
        else:
            assert got.dtype == original.dtype
            assert got.tobytes() == original.tobytes()
