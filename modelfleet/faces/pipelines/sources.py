"""Checking an uploaded pipeline source archive before it is accepted as `ready`.

The archive is extracted safely (modelfleet.runtime.archives: no `..`, no absolute paths, no
links, size and count caps) into a scratch directory. The function file must be there and
compile, and must define the function at module level (read from the syntax tree: the control
plane never runs user code). Requirements must already be satisfied by the executors' Python
environment: this platform does not install packages per pipeline, and says so.
"""

from __future__ import annotations

import ast
import importlib.metadata
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from modelfleet.pipelines.engine import PIPELINE_ARCHIVE_LIMITS
from modelfleet.runtime.archives import extract_archive
from modelfleet.runtime.errors import ModelLoadError

MAX_ARCHIVE_BYTES = 64 * 1024 * 1024


class SourceRejected(ValueError):
    """The archive is refused outright (unsafe or unreadable): a 400, nothing is stored."""


@dataclass
class SourceCheck:
    ok: bool
    reason: str | None = None
    requirements: list[str] = field(default_factory=list)


def check_archive(
    archive: bytes, function_path: str, function_name: str, requirements_path: str | None
) -> SourceCheck:
    if len(archive) > MAX_ARCHIVE_BYTES:
        raise SourceRejected(f"the source archive is over {MAX_ARCHIVE_BYTES // (1024 * 1024)} MiB")
    with tempfile.TemporaryDirectory(prefix="pipeline-check-") as tmp:
        path = Path(tmp) / "source.tar.gz"
        path.write_bytes(archive)
        dest = Path(tmp) / "src"
        try:
            extract_archive(path, dest, PIPELINE_ARCHIVE_LIMITS)
        except ModelLoadError as e:
            raise SourceRejected(str(e)) from None
        return check_tree(dest, function_path, function_name, requirements_path)


def check_tree(
    root: Path, function_path: str, function_name: str, requirements_path: str | None
) -> SourceCheck:
    file = (root / function_path).resolve()
    if not file.is_relative_to(root.resolve()):
        return SourceCheck(False, f"function_path {function_path!r} points outside the sources")
    if not file.is_file():
        return SourceCheck(False, f"function file {function_path!r} is not in the uploaded sources")
    try:
        tree = ast.parse(file.read_bytes(), filename=function_path)
    except SyntaxError as e:
        return SourceCheck(False, f"syntax error in {function_path} line {e.lineno}: {e.msg}")
    except ValueError as e:
        return SourceCheck(False, f"{function_path} cannot be parsed: {e}")
    defined = (
        {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
        | {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
        | {a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names}
    )
    if function_name not in defined:
        return SourceCheck(False, f"{function_path} defines no function named {function_name!r}")
    requirements: list[str] = []
    req_file = root / (requirements_path or "requirements.txt")
    if req_file.is_file():
        for line in req_file.read_text(errors="replace").splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith("-"):
                return SourceCheck(False, f"requirements option {line!r} is not supported")
            try:
                req = Requirement(line)
            except InvalidRequirement as e:
                return SourceCheck(False, f"invalid requirement {line!r}: {e}")
            try:
                version = importlib.metadata.version(req.name)
            except importlib.metadata.PackageNotFoundError:
                return SourceCheck(
                    False, f"requirement {line!r} is not installed on this platform's executors"
                )
            if req.specifier and not req.specifier.contains(version, prereleases=True):
                return SourceCheck(
                    False, f"requirement {line!r} conflicts with the executors' {req.name} {version}"
                )
            requirements.append(line)
    return SourceCheck(True, None, requirements)
