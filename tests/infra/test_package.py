"""`make package`: the Lambda zip, built here, with the handlers and without tests, torch, the
worker or dev tools; byte-for-byte reproducible."""

from __future__ import annotations

import hashlib
import json
import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from infra.handlers import HANDLERS

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "package_lambda.py"
FORBIDDEN_PREFIXES = (
    "tests/",
    "torch/",
    "onnxruntime/",
    "pytest/",
    "_pytest/",
    "mypy/",
    "ruff/",
    "moto/",
    "pulumi/",
)
FORBIDDEN_PREFIXES += ("modelfleet/worker/", "modelfleet/local/", "bin/")


def _build(out: Path, *flags: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), *flags], cwd=ROOT, capture_output=True, text=True,
        timeout=1200, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, object] = json.loads(done.stdout)
    return report


def _check_contents(names: list[str]) -> None:
    for h in HANDLERS:
        if h.module_exists():
            assert h.entry.split(":")[0] in names, f"{h.name}'s module is missing"
    assert "schemas/__init__.py" in names and "modelfleet/control/container.py" in names
    bad = [n for n in names if n.startswith(FORBIDDEN_PREFIXES) or n.endswith(".pyc") or "__pycache__" in n]
    assert not bad, bad[:10]


def test_the_code_zip_is_reproducible_and_holds_only_what_lambda_runs(tmp_path: Path) -> None:
    first = _build(tmp_path / "a.zip", "--no-deps")
    second = _build(tmp_path / "b.zip", "--no-deps")
    assert first["sha256"] == second["sha256"]  # same tree, same bytes
    with zipfile.ZipFile(tmp_path / "a.zip") as z:
        infos = z.infolist()
        names = [i.filename for i in infos]
        assert names == sorted(names)
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
        _check_contents(names)
    print(f"\nLambda code zip (--no-deps): {first['bytes']} bytes, {len(names)} files")
    # Every handler imports from the zip's code alone (plus the third-party packages): nothing it
    # needs was left out with the worker, the local platform or the examples.
    code = tmp_path / "code"
    with zipfile.ZipFile(tmp_path / "a.zip") as z:
        z.extractall(code)
    modules = [h.module for h in HANDLERS if h.module_exists()]
    script = (
        "import importlib, sys\n"
        f"sys.path[:0] = {[str(code), *site.getsitepackages()]!r}\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = [m for m in sys.modules if m.startswith(('modelfleet.worker', 'modelfleet.local'))]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run(  # -S: no site, so no editable install pointing back at the repository
        [sys.executable, "-S", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.skipif(
    os.environ.get("MODELFLEET_PACKAGE_FULL") == "0",
    reason="MODELFLEET_PACKAGE_FULL=0: the full build (pip, ~60 MB of wheels; ~1 min cached, 2-3 min cold)",
)
@pytest.mark.timeout(1200)
def test_the_full_build_has_the_dependencies_and_fits_lambda(tmp_path: Path) -> None:
    report = _build(tmp_path / "lambda.zip")
    with zipfile.ZipFile(tmp_path / "lambda.zip") as z:
        infos = z.infolist()
        names = [i.filename for i in infos]
        _check_contents(names)
        for package in (
            "aws_lambda_powertools/",
            "pydantic/",
            "pydantic_core/",
            "orjson/",
            "onnx/",
            "numpy/",
        ):
            assert any(n.startswith(package) for n in names), f"{package} is missing"
        unzipped = sum(i.file_size for i in infos)
    assert unzipped < 250 * 1024 * 1024  # Lambda's limit for a function's unzipped code
    digest = hashlib.sha256((tmp_path / "lambda.zip").read_bytes()).hexdigest()
    assert digest == report["sha256"]
    print(f"\nLambda code zip: {int(report['bytes']) / 1e6:.1f} MB zipped, {unzipped / 1e6:.1f} MB unzipped")
