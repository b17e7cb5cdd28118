"""A pipeline's source archive: refused when unsafe, creation_failed with a reason when unusable."""

from __future__ import annotations

import io
import tarfile

import pytest

from modelfleet.faces.pipelines.sources import SourceRejected, check_archive


def archive(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buf.getvalue()


GOOD = b"import os\n\nasync def f(x):\n    return {'y': x}\n"


def test_a_good_archive_is_ready_with_its_requirements() -> None:
    check = check_archive(
        archive({"src/main.py": GOOD, "requirements.txt": b"numpy>=1\n# c\n"}),
        "src/main.py",
        "f",
        "requirements.txt",
    )
    assert check.ok and check.requirements == ["numpy>=1"]


@pytest.mark.parametrize(
    ("members", "function", "reason"),
    [
        ({"src/main.py": b"def f(:\n"}, "f", "syntax error in src/main.py line 1"),
        ({"src/main.py": GOOD}, "g", "defines no function named 'g'"),
        ({"other.py": GOOD}, "f", "is not in the uploaded sources"),
        ({"src/main.py": GOOD, "requirements.txt": b"no-such-package-here==1\n"}, "f", "not installed"),
        ({"src/main.py": GOOD, "requirements.txt": b"numpy<1\n"}, "f", "conflicts with"),
        ({"src/main.py": GOOD, "requirements.txt": b"-e git+https://x\n"}, "f", "not supported"),
    ],
)
def test_an_unusable_archive_fails_creation_with_a_reason(
    members: dict[str, bytes], function: str, reason: str
) -> None:
    check = check_archive(archive(members), "src/main.py", function, "requirements.txt")
    assert not check.ok and check.reason is not None and reason in check.reason


@pytest.mark.parametrize(
    ("members", "links"),
    [
        ({"src/main.py": GOOD, "../escape.py": b"x"}, None),
        ({"src/main.py": GOOD, "/etc/evil": b"x"}, None),
        ({"src/main.py": GOOD}, {"src/link": "/etc/passwd"}),
    ],
)
def test_an_unsafe_archive_is_refused(members: dict[str, bytes], links: dict[str, str] | None) -> None:
    with pytest.raises(SourceRejected, match="archive refused"):
        check_archive(archive(members, links), "src/main.py", "f", None)


def test_not_an_archive_is_refused() -> None:
    with pytest.raises(SourceRejected):
        check_archive(b"plain text, not gzip", "src/main.py", "f", None)
