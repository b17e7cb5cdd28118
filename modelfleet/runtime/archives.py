"""Extracting model archives (.tar, .tar.gz, .zip) without trusting them.

An uploaded archive may try to write outside its directory (``../``, absolute names, drive letters,
symbolic or hard links, device files) or to exhaust the disk (a zip bomb, overlapping zip entries,
a gzip stream of zeros, headers that understate sizes). So:

* the format is read from the bytes, not the name;
* every member is checked BEFORE anything is written: names (no absolute path, no ``..``, no drive
  letter, no backslash, no NUL, no duplicates), types (regular files and directories only, so no
  links at all, stricter than tarfile's ``data`` filter, which allows links inside the
  destination), and the caps of :class:`ArchiveLimits` on member count, per-member size, total
  size and compression ratio;
* tar members are extracted through ``tarfile.data_filter`` as well (Python 3.11.4+; refused when
  missing), and the decompressed stream is capped while reading, since a gzip stream is only
  measurable by decompressing it;
* zip members are streamed and counted against their declared size (a lying header is refused,
  and zipfile's CRC check still runs); files are created exclusively (``"xb"``);
* extraction goes to a hidden sibling directory renamed onto ``dest`` at the end, so a refused
  archive leaves nothing behind.
"""

from __future__ import annotations

import gzip
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO, Protocol

from modelfleet.runtime.errors import ArchiveRefused

__all__ = ["ArchiveLimits", "archive_kind", "check_member_name", "check_zip_members", "extract_archive"]

_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_TAR_HEADER = 512
_ZIP_LOCAL_HEADER = 30
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps checked before extraction and enforced while streaming."""

    max_members: int = 10_000
    max_member_bytes: int = 8 * 1024**3
    max_total_bytes: int = 16 * 1024**3
    max_ratio: float = 200.0  # uncompressed / compressed, per zip member and per gzip stream
    ratio_floor_bytes: int = 1024 * 1024  # smaller members may compress better than max_ratio


def archive_kind(path: Path) -> str:
    """ "zip", "tar.gz" or "tar", from the file's first bytes; ArchiveRefused otherwise."""
    with open(path, "rb") as handle:
        head = handle.read(_TAR_HEADER)
    if head.startswith(_ZIP_MAGICS):
        return "zip"
    if head.startswith(_GZIP_MAGIC):
        return "tar.gz"
    if len(head) == _TAR_HEADER and head[257:262] == b"ustar":
        return "tar"
    raise ArchiveRefused(f"archive refused: {path.name} is not a tar, tar.gz or zip archive")


def extract_archive(path: Path, dest: Path, limits: ArchiveLimits | None = None) -> list[Path]:
    """Extract ``path`` into the new directory ``dest``; returns the regular files written.

    Raises ArchiveRefused (a ModelLoadError) naming the first offending member; nothing is left
    at ``dest`` then.
    """
    limits = limits or ArchiveLimits()
    path, dest = Path(path), Path(dest)
    if dest.exists() or dest.is_symlink():
        raise ArchiveRefused(f"archive refused: destination {dest} already exists")
    kind = archive_kind(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extract-", dir=dest.parent))
    try:
        if kind == "zip":
            _extract_zip(path, staging, limits)
        else:
            _extract_tar(path, staging, limits, compressed=kind == "tar.gz")
        staging.rename(dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sorted(p for p in dest.rglob("*") if p.is_file())


def check_member_name(name: str) -> str:
    """The member's relative POSIX path; ArchiveRefused for anything that could escape."""
    shown = repr(name[:200])
    if not name or "\x00" in name:
        raise ArchiveRefused(f"archive refused: member {shown} has an empty name or a NUL byte")
    if "\\" in name:
        raise ArchiveRefused(f"archive refused: member {shown} has a backslash in its name")
    if name.startswith("/") or _DRIVE.match(name):
        raise ArchiveRefused(f"archive refused: member {shown} is an absolute path")
    parts = [part for part in PurePosixPath(name).parts if part != "."]
    if ".." in parts:
        raise ArchiveRefused(f"archive refused: member {shown} has a '..' component")
    if not parts:
        raise ArchiveRefused(f"archive refused: member {shown} names the archive root")
    return "/".join(parts)


# --------------------------------------------------------------------------------------------
# zip
# --------------------------------------------------------------------------------------------


def check_zip_members(archive: zipfile.ZipFile, archive_bytes: int, limits: ArchiveLimits) -> None:
    """Every check that needs no decompression: names, types, sizes, ratios, overlaps."""
    infos = archive.infolist()
    if len(infos) > limits.max_members:
        raise ArchiveRefused(f"archive refused: {len(infos)} members, the limit is {limits.max_members}")
    seen: set[str] = set()
    files: set[str] = set()
    parents: set[str] = set()
    total = 0
    for info in infos:
        name = check_member_name(info.filename)
        if name in seen:
            raise ArchiveRefused(f"archive refused: member {name!r} appears twice")
        seen.add(name)
        if not info.is_dir():
            files.add(name)
        parents.update(str(parent) for parent in PurePosixPath(name).parents if str(parent) != ".")
        _check_zip_type(info, name)
        if info.flag_bits & 0x1:
            raise ArchiveRefused(f"archive refused: member {name!r} is encrypted")
        if info.file_size > limits.max_member_bytes:
            raise ArchiveRefused(
                f"archive refused: member {name!r} is {info.file_size} bytes, "
                f"the limit is {limits.max_member_bytes}"
            )
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > limits.ratio_floor_bytes and ratio > limits.max_ratio:
            raise ArchiveRefused(
                f"archive refused: member {name!r} expands {ratio:.0f}x (a zip bomb?), "
                f"the limit is {limits.max_ratio:.0f}x"
            )
        total += info.file_size
        if total > limits.max_total_bytes:
            raise ArchiveRefused(
                f"archive refused: more than {limits.max_total_bytes} bytes uncompressed in total"
            )
    clashes = sorted(files & parents)
    if clashes:
        raise ArchiveRefused(f"archive refused: member {clashes[0]!r} is both a file and a directory")
    _check_zip_overlaps(infos, archive_bytes)


def _check_zip_type(info: zipfile.ZipInfo, name: str) -> None:
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if stat.S_ISLNK(mode):
        raise ArchiveRefused(f"archive refused: member {name!r} is a symbolic link")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise ArchiveRefused(f"archive refused: member {name!r} is not a regular file or directory")


def _check_zip_overlaps(infos: list[zipfile.ZipInfo], archive_bytes: int) -> None:
    """Refuse entries sharing compressed bytes: the 'overlapping files' zip bomb (CVE-2024-0450)."""
    ordered = sorted(infos, key=lambda info: info.header_offset)
    for current, following in zip(ordered, [*ordered[1:], None], strict=True):
        end = (
            current.header_offset
            + _ZIP_LOCAL_HEADER
            + len(current.orig_filename.encode())
            + current.compress_size
        )
        limit = following.header_offset if following is not None else archive_bytes
        if end > limit:
            raise ArchiveRefused(
                f"archive refused: member {current.filename!r} overlaps the next entry (a zip bomb?)"
            )


def _extract_zip(path: Path, staging: Path, limits: ArchiveLimits) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            check_zip_members(archive, path.stat().st_size, limits)
            for info in archive.infolist():
                target = staging / check_member_name(info.filename)
                _check_inside(staging, target, info.filename)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as source, open(target, "xb") as out:
                    _copy_capped(source, out, info.file_size, info.filename)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveRefused(f"archive refused: {exc}") from exc


def _copy_capped(source: IO[bytes], out: BinaryIO, declared: int, name: str) -> None:
    written = 0
    while chunk := source.read(1024 * 1024):
        written += len(chunk)
        if written > declared:
            raise ArchiveRefused(f"archive refused: member {name!r} is larger than its header declares")
        out.write(chunk)
    if written != declared:
        raise ArchiveRefused(f"archive refused: member {name!r} is shorter than its header declares")


def _check_inside(root: Path, target: Path, name: str) -> None:
    if not target.resolve().is_relative_to(root.resolve()):
        raise ArchiveRefused(f"archive refused: member {name!r} resolves outside the destination")


# --------------------------------------------------------------------------------------------
# tar
# --------------------------------------------------------------------------------------------


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _CappedStream:
    """A read-only stream that refuses to yield more than ``cap`` bytes (decompressed tar data)."""

    def __init__(self, raw: _Readable, cap: int, compressed_bytes: int, limits: ArchiveLimits) -> None:
        self._raw = raw
        self._cap = cap
        self._compressed = compressed_bytes
        self._limits = limits
        self.consumed = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.consumed += len(data)
        if self.consumed > self._cap:
            raise ArchiveRefused(f"archive refused: more than {self._cap} bytes once decompressed")
        if (
            self.consumed > self._limits.ratio_floor_bytes
            and self.consumed > self._limits.max_ratio * self._compressed
        ):
            raise ArchiveRefused(
                f"archive refused: the archive expands more than {self._limits.max_ratio:.0f}x (a bomb?)"
            )
        return data


def _tar_filter(limits: ArchiveLimits) -> Callable[[tarfile.TarInfo, str], tarfile.TarInfo]:
    """tarfile's ``data`` filter plus: regular files and directories only, and the caps."""
    data_filter = getattr(tarfile, "data_filter", None)
    if data_filter is None:
        raise ArchiveRefused("archive refused: this Python lacks tarfile's data filter (3.11.4+ needed)")
    state = {"members": 0, "total": 0}
    seen: set[str] = set()

    def strict(member: tarfile.TarInfo, dest_path: str) -> tarfile.TarInfo:
        name = check_member_name(member.name)
        if member.issym() or member.islnk():
            raise ArchiveRefused(
                f"archive refused: member {name!r} is a link (to {member.linkname!r}); links are not allowed"
            )
        if not (member.isreg() or member.isdir()) or member.issparse():
            raise ArchiveRefused(f"archive refused: member {name!r} is not a regular file or directory")
        if name in seen and not member.isdir():
            raise ArchiveRefused(f"archive refused: member {name!r} appears twice")
        seen.add(name)
        state["members"] += 1
        state["total"] += member.size
        if state["members"] > limits.max_members:
            raise ArchiveRefused(f"archive refused: more than {limits.max_members} members")
        if member.size > limits.max_member_bytes:
            raise ArchiveRefused(
                f"archive refused: member {name!r} is {member.size} bytes, "
                f"the limit is {limits.max_member_bytes}"
            )
        if state["total"] > limits.max_total_bytes:
            raise ArchiveRefused(
                f"archive refused: more than {limits.max_total_bytes} bytes uncompressed in total"
            )
        try:
            filtered: tarfile.TarInfo = data_filter(member, dest_path)
        except tarfile.FilterError as exc:
            raise ArchiveRefused(f"archive refused: member {name!r}: {exc}") from exc
        return filtered

    return strict


def _open_tar_stream(path: Path, limits: ArchiveLimits, compressed: bool) -> tuple[IO[bytes], _CappedStream]:
    handle: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed by the caller
    raw: _Readable = gzip.GzipFile(fileobj=handle, mode="rb") if compressed else handle
    # Tar adds a header per member, pax headers for long names, and 512-byte padding.
    cap = limits.max_total_bytes + 3 * _TAR_HEADER * (limits.max_members + 1) + 20 * _TAR_HEADER
    return handle, _CappedStream(raw, cap, max(path.stat().st_size, 1), limits)


def _extract_tar(path: Path, staging: Path, limits: ArchiveLimits, compressed: bool) -> None:
    # Pass 1 checks every header without writing; pass 2 extracts through the same filter.
    for write in (False, True):
        handle, stream = _open_tar_stream(path, limits, compressed)
        check = _tar_filter(limits)
        try:
            with tarfile.open(fileobj=stream, mode="r|") as archive:  # type: ignore[call-overload]
                for member in archive:
                    if write:
                        archive.extract(member, staging, set_attrs=False, filter=check)
                    else:
                        check(member, str(staging))
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise ArchiveRefused(f"archive refused: {exc}") from exc
        finally:
            handle.close()
