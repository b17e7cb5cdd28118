"""Build the Lambda code asset: `python scripts/package_lambda.py [--out dist/lambda.zip] [--no-deps]`.

The zip holds the handlers (`functions/`), the packages they import (`modelfleet/` without the
worker, the local platform and the examples; `schemas/`), and their third-party dependencies:
the distributions the handlers actually import, pinned to the versions installed here (the ones
the tests ran with), installed for Lambda's platform (manylinux x86_64, CPython 3.11) with pip
(downloads cached). Never tests, torch, onnxruntime or dev tools.

It is reproducible: entries sorted, every timestamp 1980-01-01, fixed permissions, no bytecode,
no pip-generated scripts, so the same tree and versions give the same bytes (and the same
`source_code_hash`, so an unchanged build is no Lambda update).

`--no-deps` packs only the first-party code (seconds; what the test suite builds by default).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = ("functions", "modelfleet", "schemas")
# Worker-only and local-only code: the handlers never import it (checked by --check-imports).
EXCLUDED_DIRS = ("modelfleet/worker", "modelfleet/local", "modelfleet/examples", "modelfleet/console/static")
EXCLUDED_NAMES = ("__pycache__", ".mypy_cache", ".pytest_cache")
EXCLUDED_SUFFIXES = (".pyc", ".pyo")
# Never in the zip, whatever imports them: heavy runtimes of the workers and dev tools.
EXCLUDED_DISTRIBUTIONS = frozenset(
    {
        "torch",
        "onnxruntime",
        "pytest",
        "hypothesis",
        "mypy",
        "ruff",
        "moto",
        "pulumi",
        "pulumi-aws",
        "pip",
        "setuptools",
    }
    # Optional: httpx's command line (click, rich, pygments) and urllib3's brotli decoding are
    # imported only when present; `google` maps to googleapis-common-protos too, but onnx needs
    # only protobuf.
    | {"click", "rich", "pygments", "brotli", "googleapis-common-protos"}
)
# Lambda's python3.12 runtime runs on Amazon Linux 2023 (glibc 2.34): every manylinux tag up to
# 2.34 loads there (pip does not expand a given tag to older ones). python3.11 runs on Amazon
# Linux 2, glibc 2.26: too old for current numpy/onnx wheels.
LAMBDA_PYTHON = "3.12"
# Declared by a dependency, never imported by a handler: tokenizers' hub client (we load tokenizers
# from files) with its own dependencies, httpx's optional command line, a CA store shim.
UNUSED_DEPENDENCIES = frozenset(
    {"huggingface-hub", "hf-xet", "fsspec", "tqdm", "filelock", "pyyaml", "httpx2", "httpcore2", "truststore"}
)
LAMBDA_PLATFORM = (
    *(arg for minor in range(34, 16, -1) for arg in ("--platform", f"manylinux_2_{minor}_x86_64")),
    *("--platform", "manylinux2014_x86_64", "--implementation", "cp", "--python-version", LAMBDA_PYTHON),
)
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
CACHE = Path(os.environ.get("MODELFLEET_PIP_CACHE", Path.home() / ".cache" / "modelfleet-lambda-pip"))

IMPORT_PROBE = """
import importlib, json, sys
before = set(sys.modules)
for m in sys.argv[1:]:
    importlib.import_module(m)
print(json.dumps(sorted({n.split('.')[0] for n in set(sys.modules) - before})))
"""


def handler_modules() -> list[str]:
    sys.path.insert(0, str(ROOT))
    from infra.handlers import HANDLERS

    return [h.module for h in HANDLERS if h.module_exists()]


def imported_top_level(modules: list[str]) -> list[str]:
    """Top-level modules a fresh interpreter loads when it imports the handlers."""
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE, *modules], cwd=ROOT, capture_output=True, text=True, check=True
    )
    names: list[str] = json.loads(out.stdout)
    return names


def requirements(modules: list[str]) -> list[str]:
    """`name==version` of every third-party distribution the handlers import."""
    from importlib.metadata import packages_distributions, version

    dist_of = packages_distributions()
    pins = set()
    for top in imported_top_level(modules):
        for dist in dist_of.get(top, []):
            if dist.lower().replace("_", "-") in EXCLUDED_DISTRIBUTIONS or dist == "modelfleet":
                continue
            pins.add(f"{dist}=={version(dist)}")
    return sorted(pins)


def install(pins: list[str], target: Path) -> None:
    cmd = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
        "--only-binary=:all:", *LAMBDA_PLATFORM, "--target", str(target), "--cache-dir", str(CACHE), *pins,
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    prune(target, EXCLUDED_DISTRIBUTIONS | UNUSED_DEPENDENCIES)
    for dist in target.glob("*.dist-info"):
        if _dist_name(dist) in EXCLUDED_DISTRIBUTIONS:
            raise SystemExit(f"{dist.name} is still in the Lambda zip")


def _dist_name(dist_info: Path) -> str:
    return dist_info.name.split("-")[0].lower().replace("_", "-")


def prune(target: Path, names: frozenset[str]) -> None:
    """Remove installed distributions (every file their RECORD lists) that the handlers never
    load, though a dependency declares them."""
    for dist in list(target.glob("*.dist-info")):
        if _dist_name(dist) not in names:
            continue
        for line in (dist / "RECORD").read_text().splitlines():
            path = target / line.split(",")[0]
            if path.is_file():
                path.unlink()
        for d in sorted((p for p in target.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            if not any(d.iterdir()):
                d.rmdir()


def _keep(rel: str) -> bool:
    parts = rel.split("/")
    if any(p in EXCLUDED_NAMES for p in parts) or rel.endswith(EXCLUDED_SUFFIXES):
        return False
    return not any(rel == d or rel.startswith(d + "/") for d in EXCLUDED_DIRS)


def first_party_files() -> Iterator[tuple[str, Path]]:
    for package in FIRST_PARTY:
        for path in (ROOT / package).rglob("*"):
            rel = path.relative_to(ROOT).as_posix()
            if path.is_file() and _keep(rel):
                yield rel, path


def dependency_files(target: Path) -> Iterator[tuple[str, Path]]:
    for path in target.rglob("*"):
        rel = path.relative_to(target).as_posix()
        if path.is_file() and _keep(rel) and not rel.startswith("bin/"):
            yield rel, path


def write_zip(out: Path, entries: Iterable[tuple[str, Path]]) -> None:
    by_name = dict(entries)  # first party wins over a same-named dependency file (none expected)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name in sorted(by_name):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3  # unix, whatever the building machine
            z.writestr(info, by_name[name].read_bytes(), compresslevel=9)
    os.replace(tmp, out)


def build(out: Path, with_deps: bool) -> dict[str, object]:
    modules = handler_modules()
    entries = list(first_party_files())
    pins: list[str] = []
    with tempfile.TemporaryDirectory(prefix="lambda-deps-") as tmp:
        if with_deps:
            pins = requirements(modules)
            install(pins, Path(tmp))
            entries += list(dependency_files(Path(tmp)))
        first = {rel for rel, _ in entries}
        write_zip(out, [(rel, path) for rel, path in entries if rel in first])
    data = out.read_bytes()
    return {
        "zip": str(out),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "handlers": modules,
        "requirements": pins,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "dist" / "lambda.zip")
    p.add_argument("--no-deps", action="store_true", help="first-party code only (no pip install)")
    args = p.parse_args(argv)
    report = build(args.out, with_deps=not args.no_deps)
    print(json.dumps(report, indent=2))
    print(f"{args.out}: {int(report['bytes']) / 1e6:.1f} MB", file=sys.stderr)  # type: ignore[call-overload]
    return 0


if __name__ == "__main__":
    sys.exit(main())
