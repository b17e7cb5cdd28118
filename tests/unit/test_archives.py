"""extract_archive: well-formed archives extract; every escape, link, bomb and cap is refused."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faults.corpus import write_tar, write_tar_many_members, write_zip
from modelfleet.runtime.archives import ArchiveLimits, archive_kind, check_member_name, extract_archive
from modelfleet.runtime.errors import ArchiveRefused, ModelLoadError

FILES = {"model.onnx": b"onnx bytes", "weights/w.bin": bytes(range(256)) * 64, "vocab.txt": b"a\nb\n"}


def _tar_files(archive: tarfile.TarFile) -> None:
    for name, data in FILES.items():
        info = tarfile.TarInfo(name)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("kind", ["tar", "tar.gz", "zip"])
def test_a_well_formed_archive_extracts_every_file(tmp_path: Path, kind: str) -> None:
    source = tmp_path / "model.bin"  # the name says nothing: the format is read from the bytes
    if kind == "zip":
        write_zip(source, FILES)
    else:
        write_tar(source, _tar_files, compressed=kind == "tar.gz")
    assert archive_kind(source) == kind
    written = extract_archive(source, tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in written) == sorted(FILES)
    for name, data in FILES.items():
        assert (tmp_path / "out" / name).read_bytes() == data
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # staging removed


def test_not_an_archive_and_an_existing_destination_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"definitely not an archive" * 40)
    with pytest.raises(ArchiveRefused, match=r"not a tar, tar\.gz or zip"):
        extract_archive(junk, tmp_path / "out")
    good = write_zip(tmp_path / "good.zip", FILES)
    (tmp_path / "taken").mkdir()
    with pytest.raises(ArchiveRefused, match="already exists"):
        extract_archive(good, tmp_path / "taken")
    assert issubclass(ArchiveRefused, ModelLoadError)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("../x", "'..'"),
        ("a/../../x", "'..'"),
        ("a/..", "'..'"),
        ("/etc/passwd", "absolute"),
        ("C:/Windows/x", "absolute"),
        ("c:x", "absolute"),
        ("a\\..\\x", "backslash"),
        ("a\x00b", "NUL"),
        ("", "empty"),
        (".", "root"),
    ],
)
def test_member_names_that_could_escape(name: str, problem: str) -> None:
    with pytest.raises(ArchiveRefused, match=problem):
        check_member_name(name)


@pytest.mark.parametrize(("name", "clean"), [("a/b.bin", "a/b.bin"), ("./a//b", "a/b"), ("a/./b", "a/b")])
def test_harmless_names_are_normalized(name: str, clean: str) -> None:
    assert check_member_name(name) == clean


SEGMENTS = st.sampled_from(["a", "b", ".", "..", "", "c:", "C:", "\\", "..\\..", "x.bin"])


@pytest.mark.filterwarnings("ignore:Duplicate name")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(["zip", "tar"]),
    names=st.lists(st.lists(SEGMENTS, min_size=1, max_size=5).map("/".join), min_size=1, max_size=4),
)
def test_any_archive_is_refused_or_stays_inside(
    tmp_path_factory: pytest.TempPathFactory, kind: str, names: list[str]
) -> None:
    """Whatever the member names, nothing is ever written outside the destination."""
    root = tmp_path_factory.mktemp("prop")
    archive_path = root / f"a.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive_path, "w") as archive:
            for index, name in enumerate(names):
                archive.writestr(zipfile.ZipInfo(name), f"member {index}")
    else:
        with tarfile.open(archive_path, "w", format=tarfile.PAX_FORMAT) as archive:
            for index, name in enumerate(names):
                data = f"member {index}".encode()
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    before = {p for p in root.rglob("*")}
    dest = root / "box" / "out"
    try:
        written = extract_archive(archive_path, dest)
    except ArchiveRefused:
        assert not dest.exists()
        written = []
    for path in written:
        assert path.resolve().is_relative_to(dest.resolve())
    outside = {p for p in root.rglob("*") if not p.is_relative_to(root / "box")} - before
    assert outside == set()


def test_member_count_cap_is_exact(tmp_path: Path) -> None:
    limits = ArchiveLimits(max_members=5)
    write_tar_many_members(tmp_path / "five.tar", 5)
    assert len(extract_archive(tmp_path / "five.tar", tmp_path / "ok", limits)) == 5
    write_tar_many_members(tmp_path / "six.tar", 6)
    with pytest.raises(ArchiveRefused, match="more than 5 members"):
        extract_archive(tmp_path / "six.tar", tmp_path / "refused", limits)
    assert not (tmp_path / "refused").exists()
    write_zip(tmp_path / "six.zip", {f"f{i}": b"x" for i in range(6)})
    with pytest.raises(ArchiveRefused, match="6 members, the limit is 5"):
        extract_archive(tmp_path / "six.zip", tmp_path / "refused", limits)


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_member_and_total_size_caps(tmp_path: Path, kind: str) -> None:
    members = {"a.bin": bytes(3000), "b.bin": bytes(3000)}
    path = tmp_path / f"a.{kind}"
    if kind == "zip":
        write_zip(path, members)
    else:

        def build(archive: tarfile.TarFile) -> None:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))

        write_tar(path, build)
    with pytest.raises(ArchiveRefused, match="is 3000 bytes, the limit is 2999"):
        extract_archive(path, tmp_path / "o1", ArchiveLimits(max_member_bytes=2999))
    with pytest.raises(ArchiveRefused, match="more than 5999 bytes uncompressed"):
        extract_archive(path, tmp_path / "o2", ArchiveLimits(max_total_bytes=5999))
    assert len(extract_archive(path, tmp_path / "o3", ArchiveLimits(max_total_bytes=6000))) == 2
