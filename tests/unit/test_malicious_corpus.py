"""Fault-suite rows 7 and 8: every malicious file of the corpus is refused before anything runs.

The code-execution payloads create a canary file when they run. First they are shown to be live
(run on purpose in a child process, the canary appears); then each is handed to our loaders and
refused, and the canary is still absent.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from faults import corpus
from modelfleet.runtime.archives import ArchiveLimits, extract_archive
from modelfleet.runtime.backends import load_model
from modelfleet.runtime.errors import ArchiveRefused, ModelLoadError, UnsafeArtifactError, UnsafePickleError
from modelfleet.runtime.torchscript_safety import check_torchscript_archive, scan_pickle_globals
from schemas.tensors import DataType, Signature, TensorSpec
from tests.models import export_torchscript, train_torch_digits

SIGNATURE = Signature(
    inputs=[TensorSpec(name="input", datatype=DataType.FP32, shape=[-1, 4])],
    outputs=[TensorSpec(name="output", datatype=DataType.FP32, shape=[-1, 4])],
)


@pytest.fixture
def canary(tmp_path: Path) -> Iterator[Path]:
    """The file a payload creates if it runs; every test ends by checking it is absent."""
    path = tmp_path / "canary"
    yield path
    assert not path.exists(), "a payload ran: the canary file exists"


def _run_child(code: str, *args: str) -> None:
    subprocess.run([sys.executable, "-c", code, *args], check=False, timeout=120, capture_output=True)


# --------------------------------------------------------------------------------------------
# The payloads are live
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("protocol", "shell"), [(2, False), (4, False), (2, True)])
def test_the_pickle_payloads_really_run_when_unpickled(tmp_path: Path, protocol: int, shell: bool) -> None:
    live = tmp_path / "live-canary"
    payload = tmp_path / "payload.pkl"
    payload.write_bytes(corpus.reduce_pickle(live, protocol=protocol, shell=shell))
    _run_child("import pickle, sys; pickle.loads(open(sys.argv[1], 'rb').read())", str(payload))
    assert live.exists()


def test_the_from_file_torchscript_really_writes_when_loaded_by_torch(tmp_path: Path) -> None:
    live = tmp_path / "live-canary"
    model = corpus.write_from_file_torchscript(tmp_path / "from_file.pt", live)
    live.unlink(missing_ok=True)  # make sure the load is what creates it
    _run_child("import sys, torch; torch.jit.load(sys.argv[1])", str(model))
    assert live.exists()


# --------------------------------------------------------------------------------------------
# Torch: refused before torch reads a byte
# --------------------------------------------------------------------------------------------

TORCH_CORPUS: dict[str, tuple[Callable[[Path, Path], Path], str]] = {
    "raw-pickle": (corpus.write_raw_pickle, "is a raw pickle, not a TorchScript archive"),
    "torchscript-shaped-reduce": (
        corpus.write_malicious_torchscript,
        r"references (io|builtins)\.open, which is outside TorchScript's allowed globals",
    ),
    "torchscript-shaped-stack-global": (
        lambda path, canary: corpus.write_malicious_torchscript(path, canary, protocol=4),
        "opcode STACK_GLOBAL",
    ),
    "pickle-zip-polyglot": (corpus.write_prefixed_torchscript, "is a raw pickle"),
    "junk-before-zip": (
        lambda path, canary: corpus.write_prefixed_torchscript(path, canary, b"#!/bin/sh\n" * 50),
        "not a zip file from offset 0",
    ),
    "torch-save-checkpoint": (corpus.write_torch_save_checkpoint, "looks like a torch.save checkpoint"),
    "from-file-operator": (corpus.write_from_file_torchscript, "'from_file' reaches the filesystem"),
}


@pytest.mark.parametrize("case", sorted(TORCH_CORPUS))
def test_the_torch_corpus_is_refused_before_loading(tmp_path: Path, canary: Path, case: str) -> None:
    build, message = TORCH_CORPUS[case]
    model = build(tmp_path / f"{case}.pt", canary)
    canary.unlink(missing_ok=True)  # scripting the from_file module may touch it; loading must not
    with pytest.raises(UnsafePickleError, match=message):
        check_torchscript_archive(model)
    with pytest.raises(UnsafeArtifactError, match=message) as refused:
        load_model("torchscript", model, SIGNATURE, 1)
    assert isinstance(refused.value, ModelLoadError)


def test_the_shell_payload_names_os_system(tmp_path: Path, canary: Path) -> None:
    model = corpus.write_torchscript_shaped(tmp_path / "m.pt", corpus.reduce_pickle(canary, shell=True))
    with pytest.raises(UnsafePickleError, match=r"references (posix|os)\.system"):
        load_model("torchscript", model, SIGNATURE, 1)


def test_a_truncated_pickle_is_refused(tmp_path: Path) -> None:
    broken = pickle.dumps({"weights": [1.0, 2.0]}, protocol=2)[:-3]
    model = corpus.write_torchscript_shaped(tmp_path / "m.pt", broken)
    with pytest.raises(UnsafePickleError, match="not a valid pickle"):
        load_model("torchscript", model, SIGNATURE, 1)


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor")
def test_genuine_torchscript_archives_pass_and_load(tmp_path: Path) -> None:
    """No false positives: traced, scripted, fp16 and quantized modules keep loading."""
    digits = tmp_path / "digits.pt"
    export_torchscript(train_torch_digits(seed=0)[0], digits)
    traced = torch.jit.trace(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU()), torch.zeros(1, 4))
    traced.save(str(tmp_path / "traced.pt"))
    half = torch.jit.script(torch.nn.Linear(4, 4).half())
    half.save(str(tmp_path / "half.pt"))
    quantized = torch.ao.quantization.quantize_dynamic(
        torch.nn.Sequential(torch.nn.Linear(4, 4)), dtype=torch.qint8
    )
    torch.jit.script(quantized).save(str(tmp_path / "quantized.pt"))
    for name in ("digits.pt", "traced.pt", "half.pt", "quantized.pt"):
        check_torchscript_archive(tmp_path / name)
    out = load_model("torchscript", tmp_path / "traced.pt", SIGNATURE, 1).run(
        {"input": torch.ones(2, 4).numpy()}
    )
    assert out["output"].shape == (2, 4)


def test_scan_lists_the_globals_of_a_real_archive(tmp_path: Path) -> None:
    import zipfile

    torch.jit.script(torch.nn.Linear(2, 2)).save(str(tmp_path / "l.pt"))
    with zipfile.ZipFile(tmp_path / "l.pt") as archive:
        (data,) = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        found = scan_pickle_globals(archive.read(data), data)
    assert "torch._utils._rebuild_tensor_v2" in found
    assert any(name.startswith("__torch__.") for name in found)


# --------------------------------------------------------------------------------------------
# ONNX: external data pointing outside the model directory
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("dotdot", "has a '..' component"),
        ("absolute", "is an absolute path"),
        ("symlink", "goes through a symbolic link|resolves outside the model directory"),
    ],
)
def test_onnx_external_data_traversal_is_refused(
    tmp_path: Path, canary: Path, case: str, message: str
) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    location = {"dotdot": "../../etc/passwd", "absolute": "/etc/passwd", "symlink": "weights.bin"}[case]
    if case == "symlink":
        os.symlink("/etc/passwd", model_dir / "weights.bin")
    path = corpus.write_onnx_external(model_dir, location)
    with pytest.raises(ModelLoadError, match=f"unsafe external data location.*({message})"):
        load_model("onnx", path, None, 1)


# --------------------------------------------------------------------------------------------
# Archives: traversal, links, devices, bombs, caps
# --------------------------------------------------------------------------------------------

SMALL = ArchiveLimits(max_members=50, max_member_bytes=4 * 1024**2, max_total_bytes=8 * 1024**2)

ARCHIVE_CORPUS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "tar-dotdot": (corpus.write_tar_traversal, "'..' component"),
    "tar-absolute": (lambda p: corpus.write_tar_traversal(p, "/tmp/escaped.txt"), "absolute path"),
    "tar-symlink-etc": (corpus.write_tar_link, r"is a link \(to '/etc'\)"),
    "tar-symlink-relative": (lambda p: corpus.write_tar_link(p, "../../.."), "is a link"),
    "tar-hardlink-passwd": (
        lambda p: corpus.write_tar_link(p, "/etc/passwd", tarfile.LNKTYPE, "passwd"),
        "is a link",
    ),
    "tar-device": (corpus.write_tar_device, "not a regular file or directory"),
    "tar-gz-bomb": (lambda p: corpus.write_tar_gz_bomb(p, 64 * 1024**2), "expands more than 200x"),
    "tar-too-many-members": (lambda p: corpus.write_tar_many_members(p, 51), "more than 50 members"),
    "tar-oversized-member": (lambda p: corpus.write_tar_gz_bomb(p, 5 * 1024**2), "is 5242880 bytes"),
    "zip-slip": (lambda p: corpus.write_zip(p, {"ok.txt": b"x", "../../escaped.txt": b"pwned"}), "'..'"),
    "zip-absolute": (lambda p: corpus.write_zip(p, {"/tmp/escaped.txt": b"pwned"}), "absolute path"),
    "zip-drive-letter": (lambda p: corpus.write_zip(p, {"C:/escaped.txt": b"pwned"}), "absolute path"),
    "zip-symlink": (lambda p: corpus.write_zip(p, {}, symlinks={"etc": "/etc"}), "symbolic link"),
    "zip-bomb": (lambda p: corpus.write_zip_bomb(p, 16 * 1024**2), "a zip bomb"),
    "zip-overlapping": (corpus.write_overlapping_zip, "overlaps the next entry"),
    "zip-lying-size": (corpus.write_zip_lying_size, "larger than its header declares|Bad CRC|Error -3"),
}


@pytest.mark.parametrize("case", sorted(ARCHIVE_CORPUS))
def test_the_archive_corpus_is_refused(tmp_path: Path, canary: Path, case: str) -> None:
    build, message = ARCHIVE_CORPUS[case]
    source = build(tmp_path / "upload.bin")
    dest = tmp_path / "sandbox" / "out"
    limits = ArchiveLimits() if case in ("zip-bomb", "tar-gz-bomb") else SMALL
    with pytest.raises(ArchiveRefused, match=message):
        extract_archive(source, dest, limits)
    assert not dest.exists()
    assert list((tmp_path / "sandbox").iterdir()) == []  # the staging directory is gone too
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path.parent / "escaped.txt").exists()
