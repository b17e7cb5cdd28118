"""Open Inference Protocol v2 (KServe v2 / Triton) HTTP request and response codec.

Two body layouts are supported, in both directions:

* pure JSON: every tensor carries ``"data"`` (a flat or nested list);
* the binary tensor extension: the ``Inference-Header-Content-Length`` HTTP header gives the
  length N of the JSON header; the rest of the body is the raw tensor data, concatenated in the
  order the tensors are listed. A tensor with ``"parameters": {"binary_data_size": k}`` owns the
  next k bytes: little-endian, C order; BYTES elements are each prefixed by their length as a
  4-byte little-endian unsigned integer.

Decoding is on the hot path: binary data is wrapped with ``np.frombuffer`` (no copy), JSON data
goes through one ``np.asarray`` call plus a type check on the inferred dtype (so ``null``,
strings or booleans in a FP32 tensor are refused rather than silently coerced).

Caveats: JSON cannot carry NaN or infinity; orjson writes them as ``null`` in JSON responses (use
binary outputs for such data). A BYTES output requested as JSON whose elements are not valid
UTF-8 is sent as binary instead, since JSON strings cannot hold it.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from math import prod
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from modelfleet.runtime.errors import ModelRuntimeError, RequestDecodeError
from schemas.tensors import DataType

DEFAULT_MAX_ELEMENTS = 16_000_000

_NUMPY_NAMES = "BOOL:bool UINT8:uint8 UINT16:uint16 UINT32:uint32 UINT64:uint64 INT8:int8 INT16:int16"
_NUMPY_NAMES += " INT32:int32 INT64:int64 FP16:float16 FP32:float32 FP64:float64 BYTES:object"
_DATATYPE_TO_NUMPY: dict[DataType, np.dtype[Any]] = {
    DataType(oip): np.dtype(numpy) for oip, numpy in (pair.split(":") for pair in _NUMPY_NAMES.split())
}
# Keyed by kind and size, since e.g. numpy's ulonglong and uint64 are distinct scalar types.
_NUMPY_TO_DATATYPE: dict[tuple[str, int], DataType] = {
    (dtype.kind, dtype.itemsize): datatype for datatype, dtype in _DATATYPE_TO_NUMPY.items()
}
# Raw layout on the wire: little-endian whatever the host.
_WIRE_DTYPE: dict[DataType, np.dtype[Any]] = {
    datatype: dtype.newbyteorder("<")
    for datatype, dtype in _DATATYPE_TO_NUMPY.items()
    if datatype is not DataType.BYTES
}
_U32 = struct.Struct("<I")
_LITTLE_ENDIAN_HOST = sys.byteorder == "little"
_KIND_NAMES = {"b": "booleans", "i": "integers", "u": "integers", "f": "non-integer numbers"}
_KIND_NAMES |= {"U": "strings", "O": "null, nested-list or out-of-range values"}


def datatype_to_numpy(datatype: DataType | str) -> np.dtype[Any]:
    """The numpy dtype holding ``datatype`` (BYTES -> object arrays of ``bytes``)."""
    try:
        return _DATATYPE_TO_NUMPY[DataType(datatype)]
    except ValueError:
        raise ValueError(f"unknown datatype {datatype!r}") from None


def numpy_to_datatype(dtype: npt.DTypeLike) -> DataType:
    """The OIP datatype of a numpy dtype; object, ``S`` and ``U`` arrays map to BYTES.

    Raises ValueError for dtypes without an OIP equivalent (complex, datetime, ...).
    """
    np_dtype = np.dtype(dtype)
    if np_dtype.kind in "OSU":
        return DataType.BYTES
    found = _NUMPY_TO_DATATYPE.get((np_dtype.kind, np_dtype.itemsize))
    if found is None:
        raise ValueError(f"numpy dtype {np_dtype} has no Open Inference Protocol datatype")
    return found


@dataclass(slots=True)
class InferTensor:
    name: str
    datatype: DataType
    shape: tuple[int, ...]
    data: npt.NDArray[Any]


@dataclass(slots=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass(slots=True)
class InferRequest:
    id: str | None
    inputs: list[InferTensor]
    outputs: list[RequestedOutput]
    binary_outputs_default: bool
    parameters: dict[str, Any] = field(default_factory=dict)


def decode_infer_request(
    body: bytes | bytearray | memoryview,
    json_header_length: int | None,
    *,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> InferRequest:
    """Decode an OIP v2 infer request body; every failure raises RequestDecodeError.

    ``json_header_length`` is the ``Inference-Header-Content-Length`` header (None: all JSON).
    Binary tensors are zero-copy views of ``body`` (read-only when ``body`` is ``bytes``).
    """
    view = memoryview(body).cast("B")
    total = len(view)
    header = view
    if json_header_length is not None:
        if isinstance(json_header_length, bool) or not 0 <= json_header_length <= total:
            raise RequestDecodeError(
                f"Inference-Header-Content-Length {json_header_length} is outside the body of {total} bytes"
            )
        header = view[:json_header_length]
    try:
        doc = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise RequestDecodeError(f"request JSON is malformed: {exc}") from None
    if not isinstance(doc, dict):
        raise RequestDecodeError("request JSON must be an object")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise RequestDecodeError("request 'id' must be a string")
    parameters = _object(doc.get("parameters"), "request 'parameters'")
    binary_default = parameters.get("binary_data_output", False)
    if not isinstance(binary_default, bool):
        raise RequestDecodeError("request parameter 'binary_data_output' must be a boolean")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise RequestDecodeError("request 'inputs' must be a non-empty list")

    tensors: list[InferTensor] = []
    seen: set[str] = set()
    offset = 0 if json_header_length is None else json_header_length
    elements = 0
    for index, item in enumerate(raw_inputs):
        if not isinstance(item, dict):
            raise RequestDecodeError(f"inputs[{index}] must be an object")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise RequestDecodeError(f"inputs[{index}]: 'name' must be a non-empty string")
        label = f"input {name!r}"
        if name in seen:
            raise RequestDecodeError(f"{label} appears more than once")
        seen.add(name)
        datatype = _parse_datatype(label, item.get("datatype"))
        shape = _parse_shape(label, item.get("shape"))
        count = prod(shape)
        elements += count
        if elements > max_elements:
            raise RequestDecodeError(f"request has more than {max_elements} tensor elements (at {label})")
        params = _object(item.get("parameters"), f"{label}: 'parameters'")
        if "shared_memory_region" in params:
            raise RequestDecodeError(f"{label}: shared-memory inputs are not supported")
        size = params.get("binary_data_size")
        if size is not None:
            if "data" in item:
                raise RequestDecodeError(f"{label} has both 'data' and 'binary_data_size'")
            if json_header_length is None:
                raise RequestDecodeError(
                    f"{label} has 'binary_data_size' but there is no Inference-Header-Content-Length"
                )
            if type(size) is not int or size < 0:
                raise RequestDecodeError(f"{label}: 'binary_data_size' must be a non-negative integer")
            if offset + size > total:
                raise RequestDecodeError(
                    f"{label}: binary_data_size {size} exceeds the {total - offset} bytes left in the body"
                )
            array = _decode_binary(label, view[offset : offset + size], datatype, shape, count)
            offset += size
        elif "data" in item:
            array = _decode_json(label, item["data"], datatype, shape, count)
        else:
            raise RequestDecodeError(f"{label} has neither 'data' nor 'binary_data_size'")
        tensors.append(InferTensor(name, datatype, shape, array.reshape(shape)))

    if json_header_length is not None and offset != total:
        raise RequestDecodeError(f"request body has {total - offset} bytes of binary data no input claims")
    outputs = _parse_requested_outputs(doc.get("outputs"), binary_default)
    return InferRequest(request_id, tensors, outputs, binary_default, parameters)


def _object(value: object, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RequestDecodeError(f"{what} must be an object")
    return value


def _count_error(label: str, given: int, shape: tuple[int, ...], count: int) -> RequestDecodeError:
    return RequestDecodeError(f"{label}: 'data' has {given} elements but shape {list(shape)} needs {count}")


def _parse_datatype(label: str, value: object) -> DataType:
    try:
        return DataType(value if isinstance(value, str) else repr(value))
    except ValueError:
        raise RequestDecodeError(f"{label}: unknown datatype {value!r}") from None


def _parse_shape(label: str, value: object) -> tuple[int, ...]:
    if not isinstance(value, list) or any(type(dim) is not int or dim < 0 for dim in value):
        raise RequestDecodeError(f"{label}: 'shape' must be a list of non-negative integers, got {value!r}")
    return tuple(value)


def _decode_binary(
    label: str, chunk: memoryview, datatype: DataType, shape: tuple[int, ...], count: int
) -> npt.NDArray[Any]:
    if datatype is DataType.BYTES:
        return _decode_bytes_elements(label, chunk, count)
    wire = _WIRE_DTYPE[datatype]
    if len(chunk) != count * wire.itemsize:
        raise RequestDecodeError(
            f"{label}: binary_data_size {len(chunk)} does not match {datatype.value}{list(shape)} "
            f"({count * wire.itemsize} bytes)"
        )
    if count == 0:
        return np.empty(0, dtype=_DATATYPE_TO_NUMPY[datatype])
    array = np.frombuffer(chunk, dtype=wire, count=count)
    if not _LITTLE_ENDIAN_HOST:  # pragma: no cover - big-endian hosts only
        array = array.astype(_DATATYPE_TO_NUMPY[datatype])
    return array


def _decode_bytes_elements(label: str, chunk: memoryview, count: int) -> npt.NDArray[Any]:
    out = np.empty(count, dtype=object)
    end = len(chunk)
    pos = 0
    unpack = _U32.unpack_from
    for index in range(count):
        if pos + 4 > end:
            raise RequestDecodeError(f"{label}: binary BYTES data ends before element {index}")
        (length,) = unpack(chunk, pos)
        pos += 4
        if pos + length > end:
            raise RequestDecodeError(
                f"{label}: BYTES element {index} claims {length} bytes but only {end - pos} remain"
            )
        out[index] = chunk[pos : pos + length].tobytes()
        pos += length
    if pos != end:
        raise RequestDecodeError(f"{label}: binary BYTES data has {end - pos} bytes after {count} elements")
    return out


def _decode_json(
    label: str, data: object, datatype: DataType, shape: tuple[int, ...], count: int
) -> npt.NDArray[Any]:
    # Cheap early check for the common flat-list case.
    if isinstance(data, list) and data and not isinstance(data[0], list) and len(data) != count:
        raise _count_error(label, len(data), shape, count)
    if datatype is DataType.BYTES:
        items: list[bytes] = []
        _flatten_strings(label, data, items)
        if len(items) != count:
            raise _count_error(label, len(items), shape, count)
        out = np.empty(count, dtype=object)
        out[:] = items
        return out
    target = _DATATYPE_TO_NUMPY[datatype]
    try:
        raw = np.asarray(data)  # infer first, so that null/strings/booleans are not coerced
    except (ValueError, TypeError, OverflowError) as exc:
        raise RequestDecodeError(f"{label}: 'data' is not a well-formed list: {exc}") from None
    if raw.size != count:
        raise _count_error(label, raw.size, shape, count)
    if count == 0:
        return np.empty(0, dtype=target)
    kind = raw.dtype.kind
    if datatype is DataType.UINT64 and kind == "f" and bool(np.all(np.trunc(raw) == raw)):
        # numpy promotes a mix of int64-range and uint64-only integers to float64: redo exactly.
        try:
            return np.asarray(data, dtype=target).reshape(-1)
        except (ValueError, TypeError, OverflowError):
            raise RequestDecodeError(f"{label}: 'data' has values outside the UINT64 range") from None
    wanted = {"b": "b", "i": "iu", "u": "iu"}.get(target.kind, "iuf")
    if kind not in wanted:
        expected = {"b": "booleans", "iu": "integers"}.get(wanted, "numbers")
        given = _KIND_NAMES.get(kind, str(raw.dtype))
        raise RequestDecodeError(f"{label}: {datatype.value} 'data' must hold {expected}, got {given}")
    if wanted == "iu" and raw.dtype != target:
        info = np.iinfo(target)
        if raw.min() < info.min or raw.max() > info.max:
            raise RequestDecodeError(f"{label}: 'data' has values outside the {datatype.value} range")
    return raw.astype(target, copy=False).reshape(-1)


def _flatten_strings(label: str, data: object, out: list[bytes]) -> None:
    if isinstance(data, str):
        out.append(data.encode("utf-8"))
    elif isinstance(data, list):
        for item in data:
            if isinstance(item, str):
                out.append(item.encode("utf-8"))
            else:
                _flatten_strings(label, item, out)
    else:
        raise RequestDecodeError(f"{label}: BYTES 'data' must hold strings, got {type(data).__name__}")


def _parse_requested_outputs(value: object, binary_default: bool) -> list[RequestedOutput]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise RequestDecodeError("request 'outputs' must be a list")
    requested: list[RequestedOutput] = []
    seen: set[str] = set()
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise RequestDecodeError(f"outputs[{index}] must be an object")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise RequestDecodeError(f"outputs[{index}]: 'name' must be a non-empty string")
        if name in seen:
            raise RequestDecodeError(f"output {name!r} is requested more than once")
        seen.add(name)
        params = _object(item.get("parameters"), f"output {name!r}: 'parameters'")
        if params.get("classification"):
            raise RequestDecodeError(f"output {name!r}: the classification extension is not supported")
        if "shared_memory_region" in params:
            raise RequestDecodeError(f"output {name!r}: shared-memory outputs are not supported")
        binary = params.get("binary_data", binary_default)
        if not isinstance(binary, bool):
            raise RequestDecodeError(f"output {name!r}: 'binary_data' must be a boolean")
        requested.append(RequestedOutput(name, binary))
    return requested


def encode_infer_response(
    model_name: str,
    model_version: str | None,
    request_id: str | None,
    outputs: Mapping[str, npt.NDArray[Any]],
    requested: list[RequestedOutput],
    binary_outputs_default: bool,
) -> tuple[bytes, int | None]:
    """Encode an OIP v2 infer response.

    Returns ``(body, json_header_length)``; the length is None for a pure JSON body and must
    otherwise be sent as the ``Inference-Header-Content-Length`` header. Only ``requested``
    outputs are returned when it is non-empty (RequestDecodeError for an unknown name).
    """
    if requested:
        selection: list[tuple[str, bool]] = []
        for item in requested:
            if item.name not in outputs:
                raise RequestDecodeError(
                    f"requested output {item.name!r} is not an output of the model "
                    f"(outputs: {sorted(outputs)})"
                )
            selection.append((item.name, item.binary))
    else:
        selection = [(name, binary_outputs_default) for name in outputs]

    entries: list[dict[str, Any]] = []
    chunks: list[bytes | memoryview] = []
    any_binary = False
    for name, binary in selection:
        array = np.asarray(outputs[name])
        try:
            datatype = numpy_to_datatype(array.dtype)
        except ValueError as exc:
            raise ModelRuntimeError(f"output {name!r}: {exc}") from None
        entry: dict[str, Any] = {"name": name, "datatype": datatype.value, "shape": list(array.shape)}
        raw: bytes | memoryview | None = None
        if datatype is DataType.BYTES:
            strings = None if binary else _bytes_as_strings(array)
            if strings is None:
                raw = _serialize_bytes(array)
            else:
                entry["data"] = strings
        elif binary:
            raw = _raw_numeric(array)
        else:
            entry["data"] = _json_numeric(array)
        if raw is not None:
            any_binary = True
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        entries.append(entry)

    doc: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        doc["model_version"] = model_version
    if request_id is not None:
        doc["id"] = request_id
    doc["outputs"] = entries
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not any_binary:
        return header, None
    return b"".join([header, *chunks]), len(header)


def _json_numeric(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Flat, contiguous, native-endian: what orjson's OPT_SERIALIZE_NUMPY writes directly."""
    flat = array.reshape(-1)
    if not flat.dtype.isnative:
        flat = flat.astype(flat.dtype.newbyteorder("="))
    return np.ascontiguousarray(flat)


def _raw_numeric(array: npt.NDArray[Any]) -> memoryview:
    flat = array.reshape(-1)
    little = flat.dtype.newbyteorder("<")
    if flat.dtype != little:  # big-endian arrays (or any array on a big-endian host)
        flat = flat.astype(little)
    return np.ascontiguousarray(flat).data.cast("B")


def _serialize_bytes(array: npt.NDArray[Any]) -> bytes:
    parts: list[bytes] = []
    pack = _U32.pack
    for item in array.reshape(-1).tolist():
        data = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts.append(pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def _bytes_as_strings(array: npt.NDArray[Any]) -> list[str] | None:
    """The elements as JSON strings, or None if one is not valid UTF-8."""
    strings: list[str] = []
    for item in array.reshape(-1).tolist():
        if isinstance(item, bytes):
            try:
                strings.append(item.decode("utf-8"))
            except UnicodeDecodeError:
                return None
        elif isinstance(item, str):
            strings.append(item)
        else:
            strings.append(str(item))
    return strings
