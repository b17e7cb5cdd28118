"""Refuse a "TorchScript" file before torch sees it, unless it is a plain TorchScript archive.

We never call ``torch.load`` or ``pickle``: TorchScript files are loaded with ``torch.jit.load``,
whose C++ unpickler resolves only a fixed set of globals. But the uploaded bytes are the
attacker's, so before that:

* a file that is not a zip archive is refused; a raw pickle (``pickle.dump``, legacy
  ``torch.save``) is named as such;
* the zip's members are checked like any archive (names, links, sizes, ratios, overlaps), and it
  must have TorchScript's layout (``<root>/data.pkl`` and ``<root>/code/``), so an eager
  ``torch.save`` checkpoint is refused with a clear reason;
* every pickle in it (``*.pkl``, ``*.debug_pkl``) is read with ``pickletools.genops`` (opcodes
  only, nothing is unpickled) and each GLOBAL must be one TorchScript's own unpickler resolves
  (``torch/csrc/jit/serialization/unpickler.cpp``: tensor rebuilders, ``collections.OrderedDict``,
  ``torch.*Storage``, qschemes, ``torch.device``, ``torch.jit._pickle`` list builders, and the
  archive's own compiled ``__torch__.*`` classes). Opcodes TorchScript never writes (STACK_GLOBAL,
  INST, OBJ, EXT*) are refused outright, so ``__reduce__`` payloads (``os.system``,
  ``builtins.eval``, ...) are caught as the picklescan/fickling scanners would, but by allowlist;
* TorchScript code runs at load (``__setstate__``) and at inference, and a few operators touch
  the filesystem or the network (``aten::from_file`` creates and maps any path, ``aten::save``
  writes one, ``debugprims::load_tensor`` reads one; the c10d / symmetric-memory operators open
  sockets). The archive's code is searched for those names, and any hit is refused.
"""

from __future__ import annotations

import pickletools
import re
import zipfile
from pathlib import Path, PurePosixPath

from modelfleet.runtime.archives import ArchiveLimits, check_zip_members
from modelfleet.runtime.errors import ArchiveRefused, UnsafePickleError

__all__ = ["TORCHSCRIPT_LIMITS", "check_torchscript_archive", "scan_pickle_globals"]

TORCHSCRIPT_LIMITS = ArchiveLimits(max_members=100_000, max_ratio=1000.0)
MAX_PICKLE_BYTES = 256 * 1024 * 1024
MAX_CODE_BYTES = 64 * 1024 * 1024

# module -> names; None: any name of that module (qualified ``__torch__`` classes are separate).
_ALLOWED_GLOBALS: dict[str, frozenset[str]] = {
    "torch._utils": frozenset({"_rebuild_tensor_v2", "_rebuild_qtensor", "_rebuild_sparse_tensor"}),
    "torch._tensor": frozenset({"_rebuild_from_type_v2"}),
    "torch.jit._pickle": frozenset(
        {
            "build_tensor_from_id",
            "restore_type_tag",
            "build_intlist",
            "build_tensorlist",
            "build_doublelist",
            "build_boollist",
        }
    ),
    "builtins": frozenset({"complex"}),
    "collections": frozenset({"OrderedDict"}),
    "torch": frozenset(
        {
            "device",
            "Tensor",
            "per_tensor_affine",
            "per_channel_affine",
            "per_tensor_symmetric",
            "per_channel_symmetric",
            "per_channel_affine_float_qparams",
        }
    ),
}
_STORAGE = re.compile(r"^[A-Z][A-Za-z0-9]*Storage$")
_TORCH_CLASS = re.compile(r"^__torch__(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_ZIP_ENTRY = b"PK\x03\x04"
_NEVER_IN_TORCHSCRIPT = frozenset({"STACK_GLOBAL", "INST", "OBJ", "EXT1", "EXT2", "EXT4"})

# Operators whose effects reach outside the process's tensors (names as TorchScript prints them).
_FORBIDDEN_CODE = re.compile(
    r"\bfrom_file\b|\.\s*save\b|\bload_tensor\b"
    r"|\b(?:c10d|_c10d_functional|c10d_functional|symm_mem|debugprims|_dist_autograd|dist_autograd"
    r"|distributed)\b"
)


def _global_allowed(module: str, name: str) -> bool:
    if _TORCH_CLASS.match(module) and name.isidentifier():
        return True
    if module == "torch" and _STORAGE.match(name):
        return True
    return name in _ALLOWED_GLOBALS.get(module, frozenset())


def scan_pickle_globals(data: bytes, label: str) -> list[str]:
    """The ``module.name`` globals a pickle references, refusing any TorchScript would not resolve.

    Reads opcodes only (``pickletools.genops``); nothing is unpickled, so nothing can run.
    """
    found: list[str] = []
    try:
        for opcode, arg, position in pickletools.genops(data):
            if opcode.name in _NEVER_IN_TORCHSCRIPT:
                raise UnsafePickleError(
                    f"unsafe pickle in {label}: opcode {opcode.name} at byte {position} "
                    "is never written by TorchScript (code execution in a crafted pickle)"
                )
            if opcode.name != "GLOBAL":
                continue
            module, _, name = str(arg).partition(" ")
            if not _global_allowed(module, name):
                raise UnsafePickleError(
                    f"unsafe pickle in {label}: it references {module}.{name}, "
                    "which is outside TorchScript's allowed globals; refused before loading"
                )
            found.append(f"{module}.{name}")
    except ValueError as exc:  # truncated or invalid opcode stream
        raise UnsafePickleError(f"unsafe pickle in {label}: not a valid pickle ({exc})") from exc
    return found


def _looks_like_pickle(head: bytes) -> bool:
    return head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5


def check_torchscript_archive(path: Path) -> None:
    """Raise UnsafePickleError/ArchiveRefused unless ``path`` is a plain TorchScript archive."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if _looks_like_pickle(head):
        raise UnsafePickleError(
            f"{path.name} is a raw pickle, not a TorchScript archive; pickles are never loaded "
            "(save the model with torch.jit.save)"
        )
    # torch.jit.save starts the file with a zip entry; bytes before it (a pickle+zip polyglot)
    # would let two zip readers disagree on what the archive holds.
    if head != _ZIP_ENTRY or not zipfile.is_zipfile(path):
        raise UnsafePickleError(f"{path.name} is not a TorchScript archive (not a zip file from offset 0)")
    try:
        with zipfile.ZipFile(path) as archive:
            _check_archive(archive, path)
    except zipfile.BadZipFile as exc:
        raise ArchiveRefused(f"{path.name} is a damaged zip archive: {exc}") from exc


def _check_archive(archive: zipfile.ZipFile, path: Path) -> None:
    try:
        check_zip_members(archive, path.stat().st_size, TORCHSCRIPT_LIMITS)
    except ArchiveRefused as exc:
        raise ArchiveRefused(f"{path.name}: {exc}") from exc
    for info in archive.infolist():
        with archive.open(info):  # checks each local header names the same member (no decompression)
            pass
    names = [info.filename for info in archive.infolist() if not info.is_dir()]
    roots = {PurePosixPath(name).parts[0] for name in names}
    if len(roots) != 1:
        raise UnsafePickleError(f"{path.name} is not a TorchScript archive (expected one top-level folder)")
    (root,) = roots
    if f"{root}/data.pkl" not in names:
        raise UnsafePickleError(f"{path.name} is not a TorchScript archive (no {root}/data.pkl)")
    if not any(name.startswith(f"{root}/code/") for name in names):
        raise UnsafePickleError(
            f"{path.name} has no TorchScript code: it looks like a torch.save checkpoint, which is "
            "a pickle and is never loaded (save the model with torch.jit.save)"
        )
    for info in archive.infolist():
        name = info.filename
        if name.endswith((".pkl", ".debug_pkl")):
            if info.file_size > MAX_PICKLE_BYTES:
                raise UnsafePickleError(
                    f"{path.name}: pickle {name!r} is larger than {MAX_PICKLE_BYTES} bytes"
                )
            scan_pickle_globals(archive.read(info), f"{path.name}:{name}")
        elif name.startswith(f"{root}/code/") and name.endswith(".py"):
            if info.file_size > MAX_CODE_BYTES:
                raise UnsafePickleError(f"{path.name}: code {name!r} is larger than {MAX_CODE_BYTES} bytes")
            _check_code(archive.read(info), f"{path.name}:{name}")


def _check_code(data: bytes, label: str) -> None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UnsafePickleError(f"unsafe TorchScript in {label}: the code is not UTF-8") from None
    match = _FORBIDDEN_CODE.search(text)
    if match is not None:
        line = text.count("\n", 0, match.start()) + 1
        raise UnsafePickleError(
            f"unsafe TorchScript in {label} line {line}: {match.group(0)!r} reaches the filesystem "
            "or the network; refused before loading"
        )
