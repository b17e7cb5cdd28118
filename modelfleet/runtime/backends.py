"""Model backends: load ONNX (onnxruntime) and TorchScript (torch, optional) models for CPU serving.

``load_model`` never lets a loader exception escape: every failure becomes a ModelLoadError whose
message is the loader's own reason. ``LoadedModel.run`` is thread-safe: one ORT session or one
TorchScript module is shared by every executor thread of the worker.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath
from types import ModuleType
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import onnx

from modelfleet.runtime.errors import ModelLoadError, ModelRuntimeError
from modelfleet.runtime.torchscript_safety import check_torchscript_archive
from schemas.tensors import DataType, Signature, TensorSpec

__all__ = [
    "LoadedModel",
    "OnnxModel",
    "TorchScriptModel",
    "check_onnx_external_data",
    "inspect_onnx_signature",
    "load_model",
    "sha256_file",
]

_ONNX_ELEM_TYPES: dict[int, DataType] = {
    onnx.TensorProto.BOOL: DataType.BOOL,
    onnx.TensorProto.UINT8: DataType.UINT8,
    onnx.TensorProto.UINT16: DataType.UINT16,
    onnx.TensorProto.UINT32: DataType.UINT32,
    onnx.TensorProto.UINT64: DataType.UINT64,
    onnx.TensorProto.INT8: DataType.INT8,
    onnx.TensorProto.INT16: DataType.INT16,
    onnx.TensorProto.INT32: DataType.INT32,
    onnx.TensorProto.INT64: DataType.INT64,
    onnx.TensorProto.FLOAT16: DataType.FP16,
    onnx.TensorProto.FLOAT: DataType.FP32,
    onnx.TensorProto.DOUBLE: DataType.FP64,
    onnx.TensorProto.STRING: DataType.BYTES,
}
# onnxruntime names tensor types after the ONNX element type: FLOAT -> "tensor(float)".
_ORT_TYPES: dict[str, DataType] = {
    f"tensor({onnx.TensorProto.DataType.Name(elem).lower()})": datatype
    for elem, datatype in _ONNX_ELEM_TYPES.items()
}


class LoadedModel(Protocol):
    signature: Signature

    def run(self, inputs: Mapping[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        """Run one inference; safe to call from several threads at once."""
        ...

    def close(self) -> None: ...


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def load_model(fmt: str, path: Path, signature: Signature | None, threads: int) -> LoadedModel:
    """Load ``path`` ("onnx", "torchscript" or "torch_export"); any failure raises ModelLoadError."""
    try:
        if threads < 1:
            raise ModelLoadError(f"threads must be at least 1, got {threads}")
        path = Path(path)
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path}")
        if fmt == "onnx":
            return _load_onnx(path, signature, threads)
        if fmt == "torchscript":
            return _load_torchscript(path, signature, threads)
        if fmt == "torch_export":
            from modelfleet.runtime.torch_export_model import load_torch_export  # imports this module

            return load_torch_export(path, signature, threads)
        raise ModelLoadError(
            f"unsupported model format {fmt!r} (expected 'onnx', 'torchscript' or 'torch_export')"
        )
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(_reason(exc)) from exc


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text if text else type(exc).__name__


# --------------------------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------------------------


def _parse_onnx(path: Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelLoadError(f"cannot parse ONNX model {path.name}: {_reason(exc)}") from exc


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: onnx.NodeProto) -> Iterator[onnx.TensorProto]:
    for attr in node.attribute:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        sparse_tensors = [*attr.sparse_tensors]
        if attr.HasField("sparse_tensor"):
            sparse_tensors.append(attr.sparse_tensor)
        for sparse in sparse_tensors:
            yield sparse.values
            yield sparse.indices
        if attr.HasField("g"):
            yield from _graph_tensors(attr.g)
        for graph in attr.graphs:
            yield from _graph_tensors(graph)


def _model_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        for node in function.node:
            yield from _node_tensors(node)


def _unsafe_location_reason(model_dir: Path, location: str) -> str | None:
    if not location or "\x00" in location:
        return "it is empty or contains a NUL byte"
    parts = [part for part in re.split(r"[\\/]", location) if part]
    if (
        location.startswith(("/", "\\"))
        or PurePosixPath(location).is_absolute()
        or PureWindowsPath(location).is_absolute()
        or PureWindowsPath(location).drive
    ):
        return "it is an absolute path"
    if ".." in parts:
        return "it has a '..' component"
    base = model_dir.resolve()
    resolved = (model_dir / location).resolve()
    if resolved == base or not resolved.is_relative_to(base):
        return "it resolves outside the model directory"
    current = model_dir
    for part in parts:
        current = current / part
        if current.is_symlink():
            return "it goes through a symbolic link"
    return None


def _check_external_data(model: onnx.ModelProto, model_dir: Path) -> None:
    for tensor in _model_tensors(model):
        entries = {entry.key: entry.value for entry in tensor.external_data}
        if tensor.data_location != onnx.TensorProto.EXTERNAL and "location" not in entries:
            continue
        location = entries.get("location", "")
        reason = _unsafe_location_reason(model_dir, location)
        if reason is not None:
            raise ModelLoadError(
                f"unsafe external data location {location!r} for tensor {tensor.name!r}: {reason}"
            )


def check_onnx_external_data(path: Path) -> None:
    """Refuse external-data locations outside the model's directory (ModelLoadError)."""
    _check_external_data(_parse_onnx(path), path.parent)


def _value_info_spec(value: onnx.ValueInfoProto, kind: str) -> TensorSpec:
    label = f"{kind} {value.name!r}"
    if not value.type.HasField("tensor_type"):
        raise ModelLoadError(f"{label} is not a tensor ({value.type.WhichOneof('value')})")
    tensor_type = value.type.tensor_type
    datatype = _ONNX_ELEM_TYPES.get(tensor_type.elem_type)
    if datatype is None:
        name = onnx.TensorProto.DataType.Name(tensor_type.elem_type)
        raise ModelLoadError(f"{label} has unsupported element type {name}")
    if not tensor_type.HasField("shape"):
        raise ModelLoadError(f"{label} has an unknown rank; give the model an explicit signature")
    dims = [dim.dim_value if dim.HasField("dim_value") else -1 for dim in tensor_type.shape.dim]
    return TensorSpec(name=value.name, datatype=datatype, shape=dims)


def inspect_onnx_signature(path: Path) -> Signature:
    """The signature of an ONNX file, read with the ``onnx`` package only (no onnxruntime)."""
    model = _parse_onnx(Path(path))
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    initializers.update(sparse.values.name for sparse in graph.sparse_initializer)
    try:
        return Signature(
            inputs=[_value_info_spec(v, "input") for v in graph.input if v.name not in initializers],
            outputs=[_value_info_spec(v, "output") for v in graph.output],
        )
    except ModelLoadError:
        raise
    except Exception as exc:  # pydantic validation: no inputs, too many dims, ...
        raise ModelLoadError(f"unusable ONNX signature: {_reason(exc)}") from exc


def _ort_spec(arg: Any, kind: str, unknown_rank: set[str]) -> TensorSpec | None:
    """TensorSpec of an ORT NodeArg; None when its rank is unknown."""
    datatype = _ORT_TYPES.get(str(arg.type))
    if datatype is None:
        raise ModelLoadError(f"{kind} {arg.name!r} has unsupported type {arg.type}")
    if arg.name in unknown_rank or arg.shape is None:
        return None
    dims = [dim if isinstance(dim, int) and dim >= 0 else -1 for dim in arg.shape]
    return TensorSpec(name=str(arg.name), datatype=datatype, shape=dims)


def _merge_specs(
    kind: str, given: list[TensorSpec], actual: list[TensorSpec | None], names: list[str]
) -> list[TensorSpec]:
    if sorted(spec.name for spec in given) != sorted(names):
        raise ModelLoadError(
            f"signature {kind}s {[s.name for s in given]} do not match the model {kind}s {names}"
        )
    by_name = dict(zip(names, actual, strict=True))
    merged: list[TensorSpec] = []
    for spec in given:
        model_spec = by_name[spec.name]
        if model_spec is None:
            merged.append(spec)
            continue
        problem = model_spec.datatype != spec.datatype or len(model_spec.shape) != len(spec.shape)
        dims: list[int] = []
        for want, have in zip(spec.shape, model_spec.shape, strict=False):
            if want != -1 and have != -1 and want != have:
                problem = True
            dims.append(have if want == -1 else want)
        if problem:
            raise ModelLoadError(
                f"signature {kind} {spec.name!r} is {spec.datatype.value}{spec.shape} but the model "
                f"has {model_spec.datatype.value}{model_spec.shape}"
            )
        merged.append(TensorSpec(name=spec.name, datatype=spec.datatype, shape=dims))
    return merged


class OnnxModel:
    """One onnxruntime InferenceSession; ``InferenceSession.run`` is thread-safe."""

    def __init__(self, session: Any, signature: Signature) -> None:
        self.signature = signature
        self._session: Any = session
        self._input_names = [spec.name for spec in signature.inputs]
        self._output_names = [spec.name for spec in signature.outputs]
        self._string_inputs = {spec.name for spec in signature.inputs if spec.datatype is DataType.BYTES}

    def run(self, inputs: Mapping[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        session = self._session
        if session is None:
            raise ModelRuntimeError("model is closed")
        try:
            feed = {name: inputs[name] for name in self._input_names}
        except KeyError as exc:
            raise ModelRuntimeError(f"missing input {exc.args[0]!r}") from None
        for name in self._string_inputs:
            feed[name] = _as_str_array(feed[name])
        try:
            results = session.run(self._output_names, feed)
        except Exception as exc:
            raise ModelRuntimeError(f"inference failed: {_reason(exc)}") from exc
        return dict(zip(self._output_names, results, strict=True))

    def close(self) -> None:
        self._session = None


def _as_str_array(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    flat = [item.decode("utf-8", "replace") if isinstance(item, bytes) else item for item in array.ravel()]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(array.shape)


def _load_onnx(path: Path, signature: Signature | None, threads: int) -> OnnxModel:
    import onnxruntime as ort

    unknown_rank: set[str] = set()
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # unverifiable: never let onnxruntime read it (external data paths)
        raise ModelLoadError(f"not a readable ONNX model: {_reason(exc)}") from None
    else:
        _check_external_data(model, path.parent)
        unknown_rank = {
            value.name
            for value in [*model.graph.input, *model.graph.output]
            if value.type.HasField("tensor_type") and not value.type.tensor_type.HasField("shape")
        }
        del model

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])

    inputs, outputs = session.get_inputs(), session.get_outputs()
    input_specs = [_ort_spec(arg, "input", unknown_rank) for arg in inputs]
    output_specs = [_ort_spec(arg, "output", unknown_rank) for arg in outputs]
    if signature is None:
        for spec, arg in zip([*input_specs, *output_specs], [*inputs, *outputs], strict=True):
            if spec is None:
                raise ModelLoadError(
                    f"tensor {arg.name!r} has an unknown rank; give the model an explicit signature"
                )
        effective = Signature(
            inputs=[spec for spec in input_specs if spec is not None],
            outputs=[spec for spec in output_specs if spec is not None],
        )
    else:
        effective = Signature(
            inputs=_merge_specs("input", signature.inputs, input_specs, [a.name for a in inputs]),
            outputs=_merge_specs("output", signature.outputs, output_specs, [a.name for a in outputs]),
        )
    return OnnxModel(session, effective)


# --------------------------------------------------------------------------------------------
# TorchScript
# --------------------------------------------------------------------------------------------


class TorchScriptModel:
    """A TorchScript module run under ``torch.inference_mode``; forward is thread-safe."""

    def __init__(self, torch: ModuleType, module: Any, signature: Signature) -> None:
        self.signature = signature
        self._torch = torch
        self._module: Any = module
        self._output_names = [spec.name for spec in signature.outputs]

    def run(self, inputs: Mapping[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        torch, module = self._torch, self._module
        if module is None:
            raise ModelRuntimeError("model is closed")
        tensors = []
        for spec in self.signature.inputs:
            if spec.name not in inputs:
                raise ModelRuntimeError(f"missing input {spec.name!r}")
            array = inputs[spec.name]
            if not array.flags.writeable:  # torch.from_numpy warns on read-only buffers
                array = array.copy()
            tensors.append(torch.from_numpy(array))
        try:
            with torch.inference_mode():
                result = module(*tensors)
        except Exception as exc:
            raise ModelRuntimeError(f"inference failed: {_reason(exc)}") from exc
        return self._outputs(result)

    def _outputs(self, result: object) -> dict[str, npt.NDArray[Any]]:
        torch, names = self._torch, self._output_names
        if isinstance(result, torch.Tensor):
            values: list[object] = [result]
        elif isinstance(result, tuple | list):
            values = list(result)
        elif isinstance(result, dict):
            missing = [name for name in names if name not in result]
            if missing:
                raise ModelRuntimeError(f"model output dict lacks {missing} (has {sorted(result)})")
            values = [result[name] for name in names]
        else:
            raise ModelRuntimeError(f"model returned unsupported type {type(result).__name__}")
        if len(values) != len(names):
            raise ModelRuntimeError(
                f"model returned {len(values)} outputs, the signature declares {len(names)}"
            )
        outputs: dict[str, npt.NDArray[Any]] = {}
        for name, value in zip(names, values, strict=True):
            if not isinstance(value, torch.Tensor):
                raise ModelRuntimeError(f"output {name!r} is a {type(value).__name__}, not a tensor")
            outputs[name] = np.ascontiguousarray(value.detach().cpu().numpy())
        return outputs

    def close(self) -> None:
        self._module = None


def _load_torchscript(path: Path, signature: Signature | None, threads: int) -> TorchScriptModel:
    if signature is None:
        raise ModelLoadError("a TorchScript model needs an explicit signature")
    byte_inputs = [spec.name for spec in signature.inputs if spec.datatype is DataType.BYTES]
    if byte_inputs:
        raise ModelLoadError(f"TorchScript models cannot take BYTES inputs ({byte_inputs})")
    # Refused before torch reads a byte: raw pickles, foreign pickle globals, file/network ops.
    # Only torch.jit.load is ever used; never torch.load, never pickle.
    check_torchscript_archive(path)
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        raise ModelLoadError("torch is not installed on this node") from None
    # Process-wide: every TorchScript model of this worker shares torch's intra-op pool.
    torch.set_num_threads(threads)
    module = torch.jit.load(str(path), map_location="cpu")
    module.eval()
    return TorchScriptModel(torch, module, signature)
