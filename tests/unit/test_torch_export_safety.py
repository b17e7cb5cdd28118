"""Malicious ``.pt2`` archives are refused before torch reads them, and nothing runs.

The payloads create a canary file when they run. First they are shown to be live: in a child
process ``torch.export.load`` (and calling the module) creates the canary. Then each is handed to
our loader and refused, and the canary is still absent.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils._sympy.functions import FloorDiv

from faults import corpus
from modelfleet.runtime.archives import ArchiveLimits
from modelfleet.runtime.backends import load_model
from modelfleet.runtime.errors import ArchiveRefused, ModelLoadError, UnsafeArtifactError, UnsafePickleError
from modelfleet.runtime.torch_export_program import check_sym_expr
from modelfleet.runtime.torch_export_safety import Pt2Limits, check_torch_export_archive


@pytest.fixture
def canary(tmp_path: Path) -> Iterator[Path]:
    """The file a payload creates if it runs; every test ends by checking it is absent."""
    path = tmp_path / "canary"
    yield path
    assert not path.exists(), "a payload ran: the canary file exists"


_LIVE_CHILD = """
import sys, torch
for path in sys.argv[1:]:
    try:
        torch.export.load(path).module()(torch.zeros(2, 4))
    except Exception:
        pass
"""

LIVE: dict[str, Callable[[Path, Path], Path]] = {
    "sample-inputs": corpus.write_torch_export_evil_sample_inputs,
    "pickled-weight": corpus.write_torch_export_pickled_weight,
    "opaque-constant": corpus.write_torch_export_opaque_constant,
    "legacy-weights": corpus.write_torch_export_legacy_weights,
    "sympy-eval": corpus.write_torch_export_sympy_eval,
    "guards-code": corpus.write_torch_export_guards_code,
}


def test_the_payloads_really_run_under_torch_export_load(tmp_path: Path) -> None:
    """Why we never call torch.export.load: each of these runs its payload there."""
    canaries = {name: tmp_path / f"live-{name}" for name in LIVE}
    paths = [str(build(tmp_path / f"{name}.pt2", canaries[name])) for name, build in LIVE.items()]
    subprocess.run([sys.executable, "-c", _LIVE_CHILD, *paths], check=False, timeout=300, capture_output=True)
    assert {name: path.exists() for name, path in canaries.items()} == dict.fromkeys(LIVE, True)


REFUSED: dict[str, tuple[Callable[[Path, Path], Path], type[Exception], str]] = {
    "sample-inputs-reduce": (
        corpus.write_torch_export_evil_sample_inputs,
        UnsafePickleError,
        r"sample_inputs/model.pt: it references (posix|os)\.system, which is outside",
    ),
    "pickled-weight": (
        corpus.write_torch_export_pickled_weight,
        UnsafePickleError,
        "is pickled \\(use_pickle",
    ),
    "opaque-constant": (
        corpus.write_torch_export_opaque_constant,
        UnsafePickleError,
        "pickled custom object",
    ),
    "sympy-eval": (corpus.write_torch_export_sympy_eval, UnsafeArtifactError, "uses '__import__'"),
    "file-op-target": (corpus.write_torch_export_file_op, UnsafeArtifactError, "it calls 'torch.save'"),
    "legacy-2.7": (corpus.write_torch_export_legacy, UnsafePickleError, "legacy torch.export format"),
    "legacy-weights": (corpus.write_torch_export_legacy_weights, UnsafePickleError, "legacy pt2 weights"),
    "dot-dot-member": (
        lambda path, _: corpus.write_torch_export_traversal(path),
        ArchiveRefused,
        "has a '..' component",
    ),
    "absolute-member": (
        lambda path, _: corpus.write_torch_export_traversal(path, "/../etc/cron.d/x"),
        ArchiveRefused,
        "'..' component|absolute",
    ),
    "oversized-extra": (
        lambda path, _: corpus.write_torch_export_oversized(path),
        ArchiveRefused,
        "over the 1048576-byte cap",
    ),
    "aoti-shared-library": (
        lambda path, _: corpus.write_torch_export_aoti(path),
        UnsafeArtifactError,
        "AOTInductor compiled native code",
    ),
    "raw-pickle": (corpus.write_raw_pickle, UnsafePickleError, "is a raw pickle"),
    "pickle-zip-polyglot": (
        lambda path, canary: _prefixed(corpus.write_torch_export(path), corpus.reduce_pickle(canary)),
        UnsafePickleError,
        "is a raw pickle",
    ),
    "junk-before-zip": (
        lambda path, _: _prefixed(corpus.write_torch_export(path), b"#!/bin/sh\n" * 10),
        UnsafeArtifactError,
        "not a zip file from offset 0",
    ),
}


def _prefixed(path: Path, prefix: bytes) -> Path:
    path.write_bytes(prefix + path.read_bytes())
    return path


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_the_malicious_archives_are_refused_before_loading(tmp_path: Path, canary: Path, case: str) -> None:
    build, error, message = REFUSED[case]
    model = build(tmp_path / f"{case}.pt2", canary)
    with pytest.raises(error, match=message):
        check_torch_export_archive(model)
    with pytest.raises(error, match=message) as refused:
        load_model("torch_export", model, None, 1)
    assert isinstance(refused.value, ModelLoadError)


def test_guards_code_is_never_compiled_by_our_loader(tmp_path: Path, canary: Path) -> None:
    """torch.export.load + module() would exec it at the first call; we load and serve without it."""
    model = load_model(
        "torch_export", corpus.write_torch_export_guards_code(tmp_path / "g.pt2", canary), None, 1
    )
    out = model.run({"input": np.ones((2, 4), np.float32)})
    assert next(iter(out.values())).shape == (2, 4)


def _rewrite_program(path: Path, edit: Callable[[dict], None]) -> Path:  # type: ignore[type-arg]
    with zipfile.ZipFile(path) as source:
        name = next(n for n in source.namelist() if n.endswith("models/model.json"))
        program = json.loads(source.read(name))
    edit(program)
    return corpus.rewrite_pt2(path, {"models/model.json": json.dumps(program).encode()})


def _rewrite_weights(path: Path, edit: Callable[[dict], None]) -> Path:  # type: ignore[type-arg]
    with zipfile.ZipFile(path) as source:
        name = next(n for n in source.namelist() if n.endswith("model_weights_config.json"))
        config = json.loads(source.read(name))
    edit(config["config"]["weight"])
    return corpus.rewrite_pt2(path, {"data/weights/model_weights_config.json": json.dumps(config).encode()})


def _first_node(program: dict) -> dict:  # type: ignore[type-arg]
    node: dict = program["graph_module"]["graph"]["nodes"][0]  # type: ignore[type-arg]
    return node


# treespec_loads imports the module of an __enum__ key or of a defaultdict's factory.
_ENUM_KEYS = json.dumps([{"__enum__": True, "fqn": "os:environ", "name": "HOME"}])
_FACTORY = json.dumps({"default_factory_module": "os", "default_factory_name": "getcwd", "dict_context": []})


def _edit_in_spec(program: dict, kwargs_type: str, context: str) -> None:  # type: ignore[type-arg]
    signature = program["graph_module"]["module_call_graph"][0]["signature"]
    version, spec = json.loads(signature["in_spec"])
    spec["children_spec"][1].update(type=kwargs_type, context=context)
    signature["in_spec"] = json.dumps([version, spec])


STRUCTURAL: dict[str, tuple[Callable[[Path], Path], str]] = {
    "aten-from-file": (
        lambda p: _rewrite_program(
            p, lambda prog: _first_node(prog).update(target="torch.ops.aten.from_file.default")
        ),
        "an operator that reaches outside",
    ),
    "other-namespace": (
        lambda p: _rewrite_program(
            p, lambda prog: _first_node(prog).update(target="torch.ops.c10d.barrier.default")
        ),
        "only torch.ops.aten operators",
    ),
    "dunder-overload": (
        lambda p: _rewrite_program(
            p, lambda prog: _first_node(prog).update(target="torch.ops.aten.add.__class__")
        ),
        "only torch.ops.aten operators",
    ),
    "custom-object": (
        lambda p: _rewrite_program(
            p,
            lambda prog: prog["graph_module"]["graph"].update(custom_obj_values={"obj": {"class_fqn": "x"}}),
        ),
        "custom \\(torchbind\\) object",
    ),
    "enum-in-pytree-spec": (
        lambda p: _rewrite_program(p, lambda prog: _edit_in_spec(prog, "builtins.dict", _ENUM_KEYS)),
        "not plain keys",
    ),
    "defaultdict-pytree-spec": (
        lambda p: _rewrite_program(p, lambda prog: _edit_in_spec(prog, "collections.defaultdict", _FACTORY)),
        "uses the container 'collections.defaultdict'",
    ),
    "weights-outside-payload": (
        lambda p: _rewrite_weights(p, lambda meta: meta["tensor_meta"].update(sizes=[{"as_int": 400}])),
        "spans 1600 bytes, its payload has 16",
    ),
    "weights-on-cuda": (
        lambda p: _rewrite_weights(
            p, lambda meta: meta["tensor_meta"].update(device={"type": "cuda", "index": 0})
        ),
        "is not a CPU tensor",
    ),
    "weights-elsewhere": (
        lambda p: _rewrite_weights(p, lambda meta: meta.update(path_name="../../etc/passwd")),
        "is not a payload of the archive",
    ),
    "unreferenced-payload": (
        lambda p: corpus.rewrite_pt2(p, {"data/weights/weight_7": bytes(16)}),
        "is not referenced",
    ),
    "unexpected-member": (
        lambda p: corpus.rewrite_pt2(p, {"code/__init__.py": b"import os"}),
        "unexpected member",
    ),
    "second-program": (lambda p: corpus.rewrite_pt2(p, {"models/other.json": b"{}"}), "unexpected member"),
    "nested-archive-extra": (
        lambda p: corpus.rewrite_pt2(p, {"extra/inner.zip": corpus.torch_save_zip(b"\x80\x02.")}),
        "not UTF-8",
    ),
    "wrong-format-marker": (lambda p: corpus.rewrite_pt2(p, {"archive_format": b"pt3"}), "unexpected value"),
    "no-program": (lambda p: corpus.rewrite_pt2(p, {"models/model.json": None}), "no models/model.json"),
    "compressed-member": (lambda p: _deflated(p), "is compressed"),
}


def _deflated(path: Path) -> Path:
    with zipfile.ZipFile(path) as source:
        members = {info.filename: source.read(info) for info in source.infolist()}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for name, data in members.items():
            target.writestr(name, data)
    return path


@pytest.mark.parametrize("case", sorted(STRUCTURAL))
def test_unexpected_structure_is_refused(tmp_path: Path, case: str) -> None:
    build, message = STRUCTURAL[case]
    model = build(corpus.write_torch_export(tmp_path / f"{case}.pt2"))
    with pytest.raises(UnsafeArtifactError, match=message):
        load_model("torch_export", model, None, 1)


def test_size_caps_apply_to_the_program_and_to_payloads(tmp_path: Path) -> None:
    model = corpus.write_torch_export(tmp_path / "m.pt2")
    check_torch_export_archive(model)  # fine with the default caps
    with pytest.raises(ArchiveRefused, match="over the 1000-byte cap"):
        check_torch_export_archive(model, Pt2Limits(max_json_bytes=1000))
    with pytest.raises(ArchiveRefused, match="the limit is 8"):
        check_torch_export_archive(model, Pt2Limits(archive=ArchiveLimits(max_member_bytes=8, max_ratio=1.0)))


def test_a_genuine_archive_with_extra_files_passes(tmp_path: Path) -> None:
    model = corpus.write_torch_export(tmp_path / "m.pt2")
    corpus.rewrite_pt2(model, {"extra/notes.txt": "digits v1 — trained 2026".encode()})
    verified = check_torch_export_archive(model)
    assert set(verified.weights) == {"weight"} and verified.constants == {}
    assert load_model("torch_export", model, None, 1).signature.inputs[0].name == "input"


# --------------------------------------------------------------------------------------------
# Symbolic expressions: what sympify (eval) may see
# --------------------------------------------------------------------------------------------

_symbols = st.builds(lambda i: sympy.Symbol(f"s{i}", positive=True, integer=True), st.integers(0, 999))
_leaves = st.one_of(_symbols, st.integers(-(10**12), 10**12).map(sympy.Integer))
_int_exprs = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(lambda p: p[0] + p[1]),
        st.tuples(inner, inner).map(lambda p: p[0] * p[1]),
        st.tuples(inner, inner).map(lambda p: sympy.Max(*p)),
        st.tuples(inner, _symbols).map(lambda p: FloorDiv(*p)),
        st.tuples(inner, _symbols).map(lambda p: sympy.Mod(*p)),
    ),
    max_leaves=5,
)
_exprs = st.one_of(
    _int_exprs,
    st.tuples(_int_exprs, _int_exprs).map(lambda p: sympy.Eq(*p, evaluate=False)),
    st.tuples(_int_exprs, _int_exprs).map(lambda p: sympy.Lt(*p, evaluate=False)),
)


@settings(max_examples=150, deadline=None)
@given(_exprs)
def test_every_srepr_of_a_shape_expression_is_accepted(expr: sympy.Basic) -> None:
    check_sym_expr(sympy.srepr(expr), "m.pt2")


@settings(max_examples=60, deadline=None)
@given(
    _exprs,
    st.sampled_from(
        ["__import__('os')", "open('x')", "eval('1')", "Symbol.__class__", "(1).real", "lambda: 1", "[1]",
         "Pow(Integer(9), Integer(99999999))", "Integer(1) ** Integer(2)", "Symbol('a\\x00')", "x:=1",
         "getattr(Integer, 'mro')", "Integer(1) if True else 0", "f'{1}'", "Integer(9)!"]
    ),
)  # fmt: skip
def test_python_beyond_srepr_is_refused_wherever_it_appears(expr: sympy.Basic, hostile: str) -> None:
    text = sympy.srepr(expr)
    for spliced in (hostile, f"Add({text}, {hostile})", f"Max({hostile}, {text})"):
        with pytest.raises(UnsafeArtifactError):
            check_sym_expr(spliced, "m.pt2")
