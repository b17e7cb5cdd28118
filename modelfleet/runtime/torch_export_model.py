"""Serve a ``torch.export`` program (``.pt2`` from ``torch.export.save``) on CPU.

``torch.export.load`` is never called: it unpickles (``torch.load`` with a ``weights_only=False``
fallback, ``pickle.loads``) and reads the zip with a second parser. Instead, after
``check_torch_export_archive`` has vetted every member:

* weights and constants are rebuilt from their raw bytes (read with the same ``zipfile`` parser
  that was checked) with ``torch.frombuffer`` + ``as_strided``, as ``_build_file_map`` does;
* the JSON program goes to torch's ``ExportedProgramDeserializer`` with no example inputs, so
  the sample-inputs pickle is never read and no guards code is compiled;
* every ``call_function`` of the deserialized graph is checked once more on the resolved object
  (an aten ``OpOverload`` or a symbolic-shape helper), then ``ep.module(check_guards=False)`` is
  served under ``torch.inference_mode``.

The signature is read from the program (user inputs by name, user outputs in order). A given
signature must name the same inputs; its outputs are matched by position (the program's output
names are internal node names), and datatypes and ranks must agree.
"""

from __future__ import annotations

import importlib
import math
import operator
import zipfile
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from modelfleet.runtime.backends import _merge_specs
from modelfleet.runtime.errors import ModelLoadError, ModelRuntimeError, UnsafeArtifactError
from modelfleet.runtime.torch_export_program import DENIED_ATEN_OPS, program_signature
from modelfleet.runtime.torch_export_safety import VerifiedPt2, check_torch_export_archive
from schemas.tensors import DataType, Signature, TensorSpec

__all__ = ["TorchExportModel", "inspect_torch_export_signature", "load_torch_export"]


class TorchExportModel:
    """The unlifted module of one ExportedProgram; a pure aten graph, so forward is thread-safe."""

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
            text = str(exc).strip().splitlines()
            raise ModelRuntimeError(f"inference failed: {text[0] if text else type(exc).__name__}") from exc
        leaves = torch.utils._pytree.tree_leaves(result)
        if len(leaves) != len(self._output_names):
            raise ModelRuntimeError(
                f"model returned {len(leaves)} outputs, the signature declares {len(self._output_names)}"
            )
        outputs: dict[str, npt.NDArray[Any]] = {}
        for name, value in zip(self._output_names, leaves, strict=True):
            if not isinstance(value, torch.Tensor):
                raise ModelRuntimeError(f"output {name!r} is a {type(value).__name__}, not a tensor")
            outputs[name] = np.ascontiguousarray(value.detach().cpu().numpy())
        return outputs

    def close(self) -> None:
        self._module = None


def inspect_torch_export_signature(path: Path) -> Signature:
    """Check the archive (no torch) and read the program's signature from its JSON."""
    path = Path(path)
    verified = check_torch_export_archive(path)
    return program_signature(verified.program, path.name)


def _effective_signature(given: Signature | None, found: Signature) -> Signature:
    if given is None:
        return found
    if len(given.outputs) != len(found.outputs):
        raise ModelLoadError(
            f"the signature declares {len(given.outputs)} outputs, the program returns {len(found.outputs)}"
        )
    renamed: list[TensorSpec | None] = [
        TensorSpec(name=want.name, datatype=have.datatype, shape=have.shape)
        for want, have in zip(given.outputs, found.outputs, strict=True)
    ]
    return Signature(
        inputs=_merge_specs("input", given.inputs, [*found.inputs], [s.name for s in found.inputs]),
        outputs=_merge_specs("output", given.outputs, renamed, [s.name for s in given.outputs]),
    )


def _payload_tensors(
    torch: ModuleType, archive: zipfile.ZipFile, root: str, directory: str, entries: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Tensors from raw storage bytes; entries sharing a payload share its storage (aliasing kept)."""
    from torch._export.serde.schema import ScalarType
    from torch._export.serde.serialize import _SERIALIZE_TO_TORCH_DTYPE

    storages: dict[str, Any] = {}
    tensors: dict[str, Any] = {}
    for fqn, entry in entries.items():
        meta = entry["tensor_meta"]
        dtype = _SERIALIZE_TO_TORCH_DTYPE[ScalarType(meta["dtype"])]
        sizes = [item["as_int"] for item in meta["sizes"]]
        strides = [item["as_int"] for item in meta["strides"]]
        offset = meta["storage_offset"]["as_int"]
        member = f"{root}/{directory}{entry['path_name']}"
        if member not in storages:
            data = archive.read(member)
            storages[member] = torch.frombuffer(bytearray(data), dtype=dtype) if data else None
        base = storages[member]
        if base is None or math.prod(sizes) == 0:
            tensor = torch.zeros(sizes, dtype=dtype)
        else:
            if base.dtype != dtype:  # one storage viewed with two dtypes
                base = base.view(torch.uint8).view(dtype)
            tensor = torch.as_strided(base, sizes, strides, offset)
        if entry.get("is_param"):
            tensor = torch.nn.Parameter(tensor, requires_grad=bool(meta.get("requires_grad")))
        tensors[fqn] = tensor
    return tensors


_PYTHON_TARGETS: frozenset[Any] = frozenset(
    {
        operator.getitem, operator.add, operator.sub, operator.mul, operator.floordiv, operator.truediv,
        operator.mod, operator.neg, operator.eq, operator.ne, operator.lt, operator.le, operator.gt,
        operator.ge, operator.and_, operator.or_, operator.not_, math.ceil, math.floor, math.trunc,
    }
)  # fmt: skip


def _check_graph_targets(torch: ModuleType, graph_module: Any, label: str) -> None:
    allowed = _PYTHON_TARGETS | {
        getattr(torch, name)
        for name in ("sym_float", "sym_int", "sym_max", "sym_min", "sym_not", "sym_ite", "sym_sum")
    }
    for module in graph_module.modules():
        graph = getattr(module, "graph", None)
        if graph is None:
            continue
        for node in graph.nodes:
            if node.op in ("placeholder", "output", "get_attr"):
                continue
            target = node.target
            if node.op == "call_function" and target in allowed:
                continue
            is_aten = isinstance(target, torch._ops.OpOverload) and target.namespace == "aten"
            if node.op == "call_function" and is_aten and target._opname not in DENIED_ATEN_OPS:
                continue
            raise UnsafeArtifactError(
                f"unsafe torch.export program in {label}: node {node.name!r} ({node.op}) calls "
                f"{target!r}; refused before running"
            )


def _deserialize(torch: ModuleType, path: Path, verified: VerifiedPt2) -> Any:
    from torch._export.serde.schema import ExportedProgram
    from torch._export.serde.serialize import ExportedProgramDeserializer, _dict_to_dataclass

    with zipfile.ZipFile(path) as archive:
        state_dict = _payload_tensors(torch, archive, verified.root, "data/weights/", verified.weights)
        constants = _payload_tensors(torch, archive, verified.root, "data/constants/", verified.constants)
    serialized = _dict_to_dataclass(ExportedProgram, verified.program)  # type: ignore[no-untyped-call]
    return ExportedProgramDeserializer().deserialize(serialized, state_dict, constants, None)


def load_torch_export(path: Path, signature: Signature | None, threads: int) -> TorchExportModel:
    """Vet, then load a ``torch.export.save`` archive; UnsafeArtifactError/ModelLoadError on refusal."""
    path = Path(path)
    if signature is not None:
        byte_inputs = [spec.name for spec in signature.inputs if spec.datatype is DataType.BYTES]
        if byte_inputs:
            raise ModelLoadError(f"torch.export models cannot take BYTES inputs ({byte_inputs})")
    # Refused before torch reads a byte: foreign members, pickles, unsafe program strings.
    verified = check_torch_export_archive(path)
    effective = _effective_signature(signature, program_signature(verified.program, path.name))
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        raise ModelLoadError("torch is not installed on this node") from None
    # Process-wide: every torch model of this worker shares torch's intra-op pool.
    torch.set_num_threads(threads)
    exported = _deserialize(torch, path, verified)
    _check_graph_targets(torch, exported.graph_module, path.name)
    in_spec = exported.call_spec.in_spec
    if in_spec is not None:
        args_spec, kwargs_spec = in_spec.children()
        if kwargs_spec.num_children or not all(child.is_leaf() for child in args_spec.children()):
            raise ModelLoadError(
                f"{path.name}: the program takes nested or keyword inputs; only flat tensors are served"
            )
    module = exported.module(check_guards=False)
    return TorchExportModel(torch, module, effective)
