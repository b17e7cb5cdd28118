"""Refuse a ``torch.export`` archive (``.pt2``) before torch sees it, unless every member is vetted.

What ``torch.export.save`` writes (torch 2.13, ``torch/export/pt2_archive/_package.py``,
``torch/_export/serde/serialize.py``): a zip by ``torch._C.PyTorchFileWriter``, members *stored*
(uncompressed) under one top-level folder named after the file, holding

* ``archive_format`` = ``pt2``, ``archive_version`` = ``0``, ``byteorder``, ``.data/version``,
  ``.data/serialization_id`` (short text);
* ``models/model.json``: the ExportedProgram as JSON (graph, signature, range constraints,
  opset, schema version, ``guards_code``); ``torch.export.save`` always names the program
  ``model``;
* ``data/weights/model_weights_config.json`` and ``data/constants/model_constants_config.json``:
  per state-dict / constant name a ``PayloadMeta`` (``path_name``, ``is_param``, ``use_pickle``,
  ``tensor_meta``); the payloads ``data/weights/weight_<n>`` and ``data/constants/tensor_<n>`` are
  **raw storage bytes** (deduplicated per storage) when ``use_pickle`` is false;
* ``data/sample_inputs/model.pt``: the example inputs, a nested ``torch.save`` zip whose
  ``data.pkl`` is a protocol-2 pickle (``torch._utils._rebuild_tensor_v2``, ``torch.*Storage``,
  ``collections.OrderedDict``); empty when the program has no example inputs;
* ``extra/<name>``: the caller's ``extra_files``, UTF-8 text.

Where ``torch.export.load`` unpickles:

* a payload with ``use_pickle`` true (tensor subclasses): ``torch.load(weights_only=False)``;
* ``data/constants/opaque_obj_<n>``: ``pickle.loads``; ``custom_obj_<n>``: torchbind objects via
  ``torch._C._pickle_load_obj``;
* the legacy pt2 weights ``data/weights/model.pt`` / ``data/constants/model.pt`` (torch < 2.8)
  and the sample inputs: ``torch.load(weights_only=True)``, then, if that fails,
  ``torch.load(weights_only=False)`` (``deserialize_torch_artifact``): a crafted pickle runs;
* the pre-pt2 format (torch 2.7: ``version``, ``serialized_exported_program.json``,
  ``serialized_state_dict.pt``, ...) goes through the same fallback.

So this module refuses, before torch runs: a non-zip or raw pickle; bytes before the zip; any
member name that could escape, links, duplicates, a member count or size over the caps, any
compressed member; anything but the members above (AOTInductor's compiled ``.so`` under
``data/aotinductor/``, ExecuTorch, MTIA, XL weights, a second program, stray files); the legacy
formats; ``use_pickle`` payloads and custom/opaque objects (they cannot be vetted without
running them); payload metadata that is not a CPU strided tensor inside its member's bytes; a
program whose code-bearing strings are not allowed (``torch_export_program``); and sample inputs
whose pickle references a global outside TorchScript's allowlist (``scan_pickle_globals``).

Our loader (``torch_export_model``) then never calls ``torch.load``, ``pickle`` or
``torch.export.load``: it builds tensors from the raw bytes with ``torch.frombuffer`` and hands
the JSON to torch's deserializer without the sample inputs.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from modelfleet.runtime.archives import ArchiveLimits, check_zip_members
from modelfleet.runtime.errors import ArchiveRefused, UnsafeArtifactError, UnsafePickleError
from modelfleet.runtime.torch_export_program import SCALAR_TYPE_ITEMSIZE, check_program
from modelfleet.runtime.torchscript_safety import scan_pickle_globals

__all__ = ["PT2_LIMITS", "Pt2Limits", "VerifiedPt2", "check_torch_export_archive"]

_ZIP_ENTRY = b"PK\x03\x04"
_STRIDED_LAYOUT = 7
_SMALL_TEXT = {  # member -> pattern its whole content must match
    "archive_format": re.compile(rb"pt2"),
    "archive_version": re.compile(rb"0"),
    "byteorder": re.compile(rb"little"),
    ".data/version": re.compile(rb"\d{1,3}\n?"),
    ".data/serialization_id": re.compile(rb"\d{1,64}"),
}
PROGRAM = "models/model.json"
WEIGHTS_CONFIG = "data/weights/model_weights_config.json"
CONSTANTS_CONFIG = "data/constants/model_constants_config.json"
SAMPLE_INPUTS = "data/sample_inputs/model.pt"
_PAYLOAD = re.compile(r"^(data/weights/weight_|data/constants/tensor_)\d{1,9}$")
_EXTRA = re.compile(r"^extra/[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_SAMPLE_MEMBER = re.compile(
    r"^(data\.pkl|data/\d{1,9}|version|byteorder|\.format_version|\.storage_alignment|\.data/version"
    r"|\.data/serialization_id)$"
)
_LEGACY_PRE_PT2 = frozenset(
    {"serialized_exported_program.json", "serialized_state_dict.pt", "serialized_state_dict.json",
     "serialized_constants.pt", "serialized_constants.json", "serialized_example_inputs.pt"}
)  # fmt: skip
_FOREIGN_DIRS = {
    "data/aotinductor/": "AOTInductor compiled native code",
    "data/executorch/": "an ExecuTorch program",
    "data/mtia": "MTIA artifacts",
    "xl_model_weights/": "XL model weights",
}


@dataclass(frozen=True)
class Pt2Limits:
    archive: ArchiveLimits = field(default_factory=lambda: ArchiveLimits(max_members=100_000, max_ratio=1.0))
    max_json_bytes: int = 64 * 1024 * 1024
    max_sample_inputs_bytes: int = 64 * 1024 * 1024
    max_extra_bytes: int = 1024 * 1024


PT2_LIMITS = Pt2Limits()


@dataclass(frozen=True)
class VerifiedPt2:
    """What the checks read, for the loader: never re-derive it from the zip without checks."""

    root: str
    program: dict[str, Any]
    weights: dict[str, dict[str, Any]]  # state-dict name -> PayloadMeta as JSON
    constants: dict[str, dict[str, Any]]
    member_sizes: dict[str, int]  # relative name -> bytes


def check_torch_export_archive(path: Path, limits: Pt2Limits = PT2_LIMITS) -> VerifiedPt2:
    """Raise UnsafeArtifactError (ArchiveRefused, UnsafePickleError) unless ``path`` is a plain
    ``torch.export.save`` archive; return what was verified."""
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head[:1] == b"\x80":
        raise UnsafePickleError(
            f"{path.name} is a raw pickle, not a torch.export archive; pickles are never loaded"
        )
    # Bytes before the first entry (a pickle/zip polyglot) would let zip readers disagree.
    if head != _ZIP_ENTRY or not zipfile.is_zipfile(path):
        raise UnsafeArtifactError(f"{path.name} is not a torch.export archive (not a zip file from offset 0)")
    try:
        with zipfile.ZipFile(path) as archive:
            return _check(archive, path, limits)
    except zipfile.BadZipFile as exc:
        raise ArchiveRefused(f"{path.name} is a damaged zip archive: {exc}") from exc


def _check(archive: zipfile.ZipFile, path: Path, limits: Pt2Limits) -> VerifiedPt2:
    label = path.name
    try:
        check_zip_members(archive, path.stat().st_size, limits.archive)
    except ArchiveRefused as exc:
        raise ArchiveRefused(f"{label}: {exc}") from exc
    infos = archive.infolist()
    for info in infos:
        if info.is_dir():
            raise ArchiveRefused(f"{label}: unexpected directory entry {info.filename!r}")
        if info.compress_type != zipfile.ZIP_STORED:
            raise ArchiveRefused(
                f"{label}: member {info.filename!r} is compressed; torch.export.save stores members"
            )
        with archive.open(info):  # each local header must name the same member
            pass
    if {PurePosixPath(info.filename).name for info in infos} & _LEGACY_PRE_PT2:
        raise UnsafePickleError(
            f"{label} is the legacy torch.export format (torch 2.7 and before: serialized_*.pt pickles "
            "that torch.export.load unpickles with weights_only=False); re-export it with torch >= 2.8"
        )
    roots = {PurePosixPath(info.filename).parts[0] for info in infos}
    if len(roots) != 1 or any("/" not in info.filename for info in infos):
        raise UnsafeArtifactError(f"{label} is not a torch.export archive (expected one top-level folder)")
    (root,) = roots
    members = {info.filename[len(root) + 1 :]: info for info in infos}
    _refuse_legacy_and_foreign(members, label)
    for required in (*_SMALL_TEXT, PROGRAM, WEIGHTS_CONFIG, CONSTANTS_CONFIG):
        if required not in members:
            raise UnsafeArtifactError(f"{label} is not a torch.export archive (no {required})")
    for name, info in members.items():
        _check_member_role(archive, name, info, label, limits)
    program = _read_json(archive, members[PROGRAM], f"{label}:{PROGRAM}", limits)
    check_program(program, f"{label}:{PROGRAM}")
    sizes = {name: info.file_size for name, info in members.items()}
    weights = _payloads(archive, members[WEIGHTS_CONFIG], "data/weights/", sizes, label, limits)
    constants = _payloads(archive, members[CONSTANTS_CONFIG], "data/constants/", sizes, label, limits)
    used = {f"data/weights/{m['path_name']}" for m in weights.values()}
    used |= {f"data/constants/{m['path_name']}" for m in constants.values()}
    unused = sorted(name for name in members if _PAYLOAD.match(name) and name not in used)
    if unused:
        raise UnsafeArtifactError(
            f"{label}: payload {unused[0]!r} is not referenced by any weight or constant"
        )
    if SAMPLE_INPUTS in members and members[SAMPLE_INPUTS].file_size:
        _check_sample_inputs(archive.read(members[SAMPLE_INPUTS]), f"{label}:{SAMPLE_INPUTS}", limits)
    return VerifiedPt2(root=root, program=program, weights=weights, constants=constants, member_sizes=sizes)


def _refuse_legacy_and_foreign(members: dict[str, zipfile.ZipInfo], label: str) -> None:
    names = set(members)
    for legacy in ("data/weights/model.pt", "data/constants/model.pt"):
        if legacy in names:
            raise UnsafePickleError(
                f"{label} has legacy pt2 weights {legacy!r} (torch < 2.8: a torch.save pickle); "
                "re-export it with torch >= 2.8, which stores raw tensor bytes"
            )
    for name in sorted(names):
        for prefix, what in _FOREIGN_DIRS.items():
            if name.startswith(prefix):
                raise UnsafeArtifactError(f"{label}: member {name!r} is {what}, which is never loaded")
        if name.startswith(("data/constants/custom_obj_", "data/constants/opaque_obj_")):
            raise UnsafePickleError(
                f"{label}: member {name!r} is a pickled custom object (torchbind or pickle.loads); "
                "it cannot be verified without running it"
            )


def _check_member_role(
    archive: zipfile.ZipFile, name: str, info: zipfile.ZipInfo, label: str, limits: Pt2Limits
) -> None:
    if name in _SMALL_TEXT:
        data = archive.read(info) if info.file_size <= 128 else b"(oversized)"
        if _SMALL_TEXT[name].fullmatch(data) is None:
            raise UnsafeArtifactError(f"{label}: member {name!r} has an unexpected value {data[:32]!r}")
    elif name in (PROGRAM, WEIGHTS_CONFIG, CONSTANTS_CONFIG) or _PAYLOAD.match(name):
        return  # read and checked below
    elif name == SAMPLE_INPUTS:
        if info.file_size > limits.max_sample_inputs_bytes:
            raise ArchiveRefused(
                f"{label}: {name!r} is {info.file_size} bytes, "
                f"over the {limits.max_sample_inputs_bytes}-byte cap"
            )
    elif _EXTRA.match(name):
        if info.file_size > limits.max_extra_bytes:
            raise ArchiveRefused(
                f"{label}: extra file {name!r} is over the {limits.max_extra_bytes}-byte cap"
            )
        try:
            archive.read(info).decode("utf-8")
        except UnicodeDecodeError:
            raise UnsafeArtifactError(f"{label}: extra file {name!r} is not UTF-8 text") from None
    else:
        raise UnsafeArtifactError(f"{label}: unexpected member {name[:200]!r} in a torch.export archive")


def _read_json(archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str, limits: Pt2Limits) -> Any:
    if info.file_size > limits.max_json_bytes:
        raise ArchiveRefused(f"{label} is {info.file_size} bytes, over the {limits.max_json_bytes}-byte cap")
    try:
        return json.loads(archive.read(info))
    except (ValueError, RecursionError) as exc:
        raise UnsafeArtifactError(f"{label} is not valid JSON: {str(exc)[:200]}") from None


def _int_list(values: Any, what: str, label: str) -> list[int]:
    if not isinstance(values, list) or len(values) > 64:
        raise UnsafeArtifactError(f"{label}: {what} is not a list of at most 64 integers")
    out = []
    for value in values:
        number = value.get("as_int") if isinstance(value, dict) else None
        if not isinstance(number, int) or isinstance(number, bool) or number < 0:
            raise UnsafeArtifactError(
                f"{label}: {what} must be concrete non-negative integers, got {value!r}"
            )
        out.append(number)
    return out


def _payloads(
    archive: zipfile.ZipFile,
    config_info: zipfile.ZipInfo,
    directory: str,
    sizes: dict[str, int],
    archive_label: str,
    limits: Pt2Limits,
) -> dict[str, dict[str, Any]]:
    label = f"{archive_label}:{config_info.filename.split('/', 1)[-1]}"
    config = _read_json(archive, config_info, label, limits)
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise UnsafeArtifactError(f"{label} is not a payload config")
    for fqn, meta in entries.items():
        where = f"{label} entry {fqn[:100]!r}"
        if not isinstance(meta, dict) or meta.get("use_pickle") is not False:
            raise UnsafePickleError(
                f"{where} is pickled (use_pickle; torch.export.load would torch.load it with "
                "weights_only=False); only raw tensor bytes are accepted"
            )
        member = f"{directory}{meta.get('path_name')}"
        if not _PAYLOAD.match(member) or member not in sizes:
            raise UnsafeArtifactError(
                f"{where} points at {member[:120]!r}, which is not a payload of the archive"
            )
        _check_tensor_meta(meta.get("tensor_meta"), sizes[member], where)
    return entries


def _check_tensor_meta(meta: Any, member_bytes: int, where: str) -> None:
    if not isinstance(meta, dict):
        raise UnsafeArtifactError(f"{where} has no tensor metadata")
    itemsize = SCALAR_TYPE_ITEMSIZE.get(meta.get("dtype", 0))
    if itemsize is None:
        raise UnsafeArtifactError(f"{where} has an unknown dtype {meta.get('dtype')!r}")
    device = meta.get("device")
    if not isinstance(device, dict) or device.get("type") != "cpu":
        raise UnsafeArtifactError(f"{where} is not a CPU tensor ({device!r})")
    if meta.get("layout") != _STRIDED_LAYOUT:
        raise UnsafeArtifactError(f"{where} is not a strided (dense) tensor")
    shape = _int_list(meta.get("sizes"), "sizes", where)
    strides = _int_list(meta.get("strides"), "strides", where)
    (offset,) = _int_list([meta.get("storage_offset")], "storage_offset", where)
    if len(shape) != len(strides):
        raise UnsafeArtifactError(f"{where}: sizes and strides differ in length")
    if member_bytes % itemsize:
        raise UnsafeArtifactError(f"{where}: its payload is not a whole number of {itemsize}-byte elements")
    if 0 in shape or member_bytes == 0:
        return  # empty tensors are rebuilt from their sizes, not from bytes
    extent = offset + sum((size - 1) * stride for size, stride in zip(shape, strides, strict=True)) + 1
    if extent * itemsize > member_bytes:
        raise UnsafeArtifactError(
            f"{where}: the tensor spans {extent * itemsize} bytes, its payload has {member_bytes}"
        )


def _check_sample_inputs(data: bytes, label: str, limits: Pt2Limits) -> None:
    """The one nested archive: a ``torch.save`` zip; only its ``data.pkl`` is ever unpickled."""
    if not data.startswith(_ZIP_ENTRY):
        raise UnsafePickleError(f"{label} is not a torch.save zip (a raw pickle or other bytes)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            check_zip_members(inner, len(data), limits.archive)
            infos = inner.infolist()
            roots = {PurePosixPath(info.filename).parts[0] for info in infos}
            if len(roots) != 1:
                raise UnsafeArtifactError(f"{label}: expected one top-level folder")
            (root,) = roots
            pickles = 0
            for info in infos:
                name = info.filename[len(root) + 1 :]
                if info.is_dir() or not _SAMPLE_MEMBER.match(name):
                    raise UnsafeArtifactError(f"{label}: unexpected member {info.filename[:200]!r}")
                if info.compress_type != zipfile.ZIP_STORED:
                    raise ArchiveRefused(f"{label}: member {info.filename!r} is compressed")
                if name == "data.pkl":
                    pickles += 1
                    scan_pickle_globals(inner.read(info), label)
            if pickles != 1:
                raise UnsafeArtifactError(f"{label}: expected one data.pkl")
    except zipfile.BadZipFile as exc:
        raise ArchiveRefused(f"{label} is a damaged zip archive: {exc}") from exc
    except ArchiveRefused as exc:
        raise ArchiveRefused(f"{label}: {exc}") from exc
