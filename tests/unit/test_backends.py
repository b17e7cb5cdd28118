"""ONNX and TorchScript backends: loading, signatures, inference, safety checks, concurrency."""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from modelfleet.runtime.backends import (
    LoadedModel,
    check_onnx_external_data,
    inspect_onnx_signature,
    load_model,
    sha256_file,
)
from modelfleet.runtime.errors import ModelLoadError, ModelRuntimeError
from schemas.tensors import DataType, Signature, TensorSpec
from tests.models import (
    export_torch_onnx,
    export_torchscript,
    reference_argmax,
    torch_logits,
    torchscript_signature,
    train_torch_digits,
)


def spec(name: str, shape: list[int], datatype: DataType = DataType.FP32) -> TensorSpec:
    return TensorSpec(name=name, datatype=datatype, shape=shape)


@pytest.fixture(scope="module")
def trained() -> tuple[torch.nn.Module, np.ndarray, np.ndarray]:
    return train_torch_digits(seed=0)


@pytest.fixture(scope="module")
def model_files(
    tmp_path_factory: pytest.TempPathFactory, trained: tuple[torch.nn.Module, np.ndarray, np.ndarray]
) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("digits")
    files = {"onnx": directory / "mlp.onnx", "torchscript": directory / "mlp.pt"}
    export_torch_onnx(trained[0], files["onnx"])
    export_torchscript(trained[0], files["torchscript"])
    assert sorted(p.name for p in directory.iterdir()) == ["mlp.onnx", "mlp.pt"]
    return files


def load(fmt: str, files: dict[str, Path], threads: int = 2) -> LoadedModel:
    signature = torchscript_signature() if fmt == "torchscript" else None
    return load_model(fmt, files[fmt], signature, threads)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_load_and_run_matches_torch(
    fmt: str, model_files: dict[str, Path], trained: tuple[torch.nn.Module, np.ndarray, np.ndarray]
) -> None:
    module, x, _ = trained
    model = load(fmt, model_files)
    assert model.signature == torchscript_signature()
    outputs = model.run({"input": x})
    assert list(outputs) == ["logits"]
    assert outputs["logits"].dtype == np.float32 and outputs["logits"].shape == (len(x), 10)
    np.testing.assert_allclose(outputs["logits"], torch_logits(module, x), atol=1e-4, rtol=0)
    np.testing.assert_array_equal(outputs["logits"].argmax(axis=1), reference_argmax(module, x))
    model.close()
    with pytest.raises(ModelRuntimeError, match="closed"):
        model.run({"input": x[:1]})


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_concurrent_runs_are_identical(
    fmt: str, model_files: dict[str, Path], trained: tuple[torch.nn.Module, np.ndarray, np.ndarray]
) -> None:
    x = trained[1]
    model = load(fmt, model_files)
    batches = [x[i * 16 : (i + 1) * 16] for i in range(8)]
    expected = [model.run({"input": batch})["logits"] for batch in batches]
    barrier = threading.Barrier(8)

    def work(index: int) -> list[np.ndarray]:
        barrier.wait()
        return [model.run({"input": batches[index]})["logits"] for _ in range(25)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(8)))
    for index, runs in enumerate(results):
        for got in runs:
            np.testing.assert_array_equal(got, expected[index])


def test_torchscript_accepts_read_only_inputs_silently(
    model_files: dict[str, Path], trained: tuple[torch.nn.Module, np.ndarray, np.ndarray]
) -> None:
    x = trained[1][:4].copy()
    x.setflags(write=False)
    model = load("torchscript", model_files)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = model.run({"input": x})["logits"]
    assert out.shape == (4, 10)


def test_inspect_onnx_signature(model_files: dict[str, Path]) -> None:
    assert inspect_onnx_signature(model_files["onnx"]) == torchscript_signature()


def test_given_signature_is_merged_with_the_model(model_files: dict[str, Path]) -> None:
    given = Signature(inputs=[spec("input", [-1, -1])], outputs=[spec("logits", [-1, -1])])
    model = load_model("onnx", model_files["onnx"], given, 1)
    assert model.signature == torchscript_signature()


@pytest.mark.parametrize(
    ("signature", "message"),
    [
        (Signature(inputs=[spec("x", [-1, 64])], outputs=[spec("logits", [-1, 10])]), "signature inputs"),
        (Signature(inputs=[spec("input", [-1, 64])], outputs=[spec("probs", [-1, 10])]), "signature outputs"),
        (Signature(inputs=[spec("input", [-1, 32])], outputs=[spec("logits", [-1, 10])]), "FP32[-1, 64]"),
        (
            Signature(inputs=[spec("input", [-1, 64], DataType.FP64)], outputs=[spec("logits", [-1, 10])]),
            "FP64",
        ),
        (Signature(inputs=[spec("input", [64])], outputs=[spec("logits", [-1, 10])]), "'input'"),
    ],
)
def test_incompatible_signature(model_files: dict[str, Path], signature: Signature, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message.replace("[", r"\[")):
        load_model("onnx", model_files["onnx"], signature, 1)


def test_corrupt_onnx_is_refused_before_onnxruntime_reads_it(tmp_path: Path) -> None:
    """A file onnx cannot parse cannot have its external-data paths checked, so onnxruntime (which
    would follow them) never opens it."""
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07 definitely not a protobuf model \xff\xff")
    with pytest.raises(ModelLoadError) as info:
        load_model("onnx", path, None, 1)
    assert "not a readable ONNX model" in str(info.value)
    assert "ONNXRuntimeError" not in str(info.value)
    with pytest.raises(ModelLoadError, match="cannot parse ONNX model"):
        inspect_onnx_signature(path)


def test_load_errors(tmp_path: Path, model_files: dict[str, Path]) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        load_model("onnx", tmp_path / "missing.onnx", None, 1)
    with pytest.raises(ModelLoadError, match="unsupported model format 'tflite'"):
        load_model("tflite", model_files["onnx"], None, 1)
    with pytest.raises(ModelLoadError, match="threads"):
        load_model("onnx", model_files["onnx"], None, 0)
    with pytest.raises(ModelLoadError, match="explicit signature"):
        load_model("torchscript", model_files["torchscript"], None, 1)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a zip archive")
    with pytest.raises(ModelLoadError) as info:
        load_model("torchscript", junk, torchscript_signature(), 1)
    assert str(info.value)
    # An ONNX file is not TorchScript, and TorchScript is not ONNX.
    with pytest.raises(ModelLoadError):
        load_model("torchscript", model_files["onnx"], torchscript_signature(), 1)
    with pytest.raises(ModelLoadError):
        load_model("onnx", model_files["torchscript"], None, 1)


def test_inference_failure_is_a_runtime_error(model_files: dict[str, Path]) -> None:
    model = load("onnx", model_files)
    with pytest.raises(ModelRuntimeError, match="inference failed"):
        model.run({"input": np.zeros((1, 63), dtype=np.float32)})
    with pytest.raises(ModelRuntimeError, match="missing input 'input'"):
        model.run({})


# --------------------------------------------------------------------------------------------
# External data safety
# --------------------------------------------------------------------------------------------

WEIGHTS = np.arange(4, dtype=np.float32)


def add_model(weights_as_constant: bool = False) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    weights = numpy_helper.from_array(WEIGHTS, "W")
    if weights_as_constant:
        nodes = [
            helper.make_node("Constant", [], ["W"], value=weights),
            helper.make_node("Add", ["x", "W"], ["y"]),
        ]
        graph = helper.make_graph(nodes, "add", [x], [y])
    else:
        graph = helper.make_graph([helper.make_node("Add", ["x", "W"], ["y"])], "add", [x], [y], [weights])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def write_external(directory: Path, location: str, weights_as_constant: bool = False) -> Path:
    """A model whose W tensor lives in external data at ``location``."""
    directory.mkdir(parents=True, exist_ok=True)
    model = add_model(weights_as_constant)
    tensor = model.graph.node[0].attribute[0].t if weights_as_constant else model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in {"location": location, "offset": "0", "length": str(WEIGHTS.nbytes)}.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    path = directory / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_safe_external_data_loads(tmp_path: Path) -> None:
    path = write_external(tmp_path / "m", "weights.bin")
    (tmp_path / "m" / "weights.bin").write_bytes(WEIGHTS.tobytes())
    check_onnx_external_data(path)
    model = load_model("onnx", path, None, 1)
    np.testing.assert_array_equal(model.run({"x": np.ones(4, dtype=np.float32)})["y"], WEIGHTS + 1)


@pytest.mark.parametrize("constant", [False, True], ids=["initializer", "constant-node"])
@pytest.mark.parametrize("case", ["dotdot", "nested-dotdot", "absolute", "symlink", "symlinked-dir"])
def test_unsafe_external_data_is_refused(tmp_path: Path, case: str, constant: bool) -> None:
    evil = tmp_path / "evil.bin"
    evil.write_bytes(WEIGHTS.tobytes())
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    location = {
        "dotdot": "../evil.bin",
        "nested-dotdot": "sub/../../evil.bin",
        "absolute": str(evil),
        "symlink": "link.bin",
        "symlinked-dir": "outside/evil.bin",
    }[case]
    if case == "symlink":
        os.symlink(evil, model_dir / "link.bin")
    if case == "symlinked-dir":
        os.symlink(tmp_path, model_dir / "outside")
    path = write_external(model_dir, location, weights_as_constant=constant)
    with pytest.raises(ModelLoadError, match="unsafe external data location"):
        load_model("onnx", path, None, 1)
    with pytest.raises(ModelLoadError, match="unsafe external data location"):
        check_onnx_external_data(path)


def test_symlink_inside_the_directory_is_refused_too(tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "real.bin").write_bytes(WEIGHTS.tobytes())
    os.symlink(model_dir / "real.bin", model_dir / "alias.bin")
    path = write_external(model_dir, "alias.bin")
    with pytest.raises(ModelLoadError, match="symbolic link"):
        load_model("onnx", path, None, 1)


# --------------------------------------------------------------------------------------------
# Other model shapes
# --------------------------------------------------------------------------------------------


def test_unknown_rank_needs_a_signature(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.INT64, None)],
        [helper.make_tensor_value_info("y", TensorProto.INT64, None)],
    )
    path = tmp_path / "identity.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), path)
    with pytest.raises(ModelLoadError, match="unknown rank"):
        load_model("onnx", path, None, 1)
    with pytest.raises(ModelLoadError, match="unknown rank"):
        inspect_onnx_signature(path)
    signature = Signature(inputs=[spec("x", [2], DataType.INT64)], outputs=[spec("y", [2], DataType.INT64)])
    model = load_model("onnx", path, signature, 1)
    assert model.signature == signature
    np.testing.assert_array_equal(model.run({"x": np.array([4, 5])})["y"], [4, 5])


def test_onnx_string_tensors(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["s"], ["t"])],
        "strings",
        [helper.make_tensor_value_info("s", TensorProto.STRING, ["n"])],
        [helper.make_tensor_value_info("t", TensorProto.STRING, ["n"])],
    )
    path = tmp_path / "strings.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), path)
    model = load_model("onnx", path, None, 1)
    assert model.signature.inputs == [spec("s", [-1], DataType.BYTES)]
    data = np.empty(2, dtype=object)
    data[:] = [b"hello", "w\u00f6rld".encode()]
    assert model.run({"s": data})["t"].tolist() == ["hello", "w\u00f6rld"]


class TupleOut(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * 2, x + 1


class DictOut(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"plus": x + 1, "double": x * 2}


@pytest.mark.parametrize("module", [TupleOut(), DictOut()], ids=["tuple", "dict"])
def test_torchscript_multiple_outputs(tmp_path: Path, module: torch.nn.Module) -> None:
    path = tmp_path / "multi.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted: Any = torch.jit.script(module)
    scripted.save(str(path))
    signature = Signature(inputs=[spec("x", [-1])], outputs=[spec("double", [-1]), spec("plus", [-1])])
    model = load_model("torchscript", path, signature, 1)
    out = model.run({"x": np.array([1.0, 2.0], dtype=np.float32)})
    assert list(out) == ["double", "plus"]
    np.testing.assert_array_equal(out["double"], [2.0, 4.0])
    np.testing.assert_array_equal(out["plus"], [2.0, 3.0])
    too_many = Signature(
        inputs=[spec("x", [-1])], outputs=[spec("double", [-1]), spec("plus", [-1]), spec("z", [-1])]
    )
    with pytest.raises(ModelRuntimeError):
        load_model("torchscript", path, too_many, 1).run({"x": np.zeros(1, dtype=np.float32)})


def test_sha256_file(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    data = os.urandom((3 << 20) + 5)
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
