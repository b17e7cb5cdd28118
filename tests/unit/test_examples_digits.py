"""The `make up` example: sklearn digits MLP exported to ONNX by hand, without torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from modelfleet.examples.digits import (
    build_example,
    digits_split,
    export_mlp_onnx,
    sample_row,
    train_digits_mlp,
)
from modelfleet.runtime.backends import inspect_onnx_signature, load_model
from schemas.tensors import DataType, Signature, TensorSpec

EXPECTED_SIGNATURE = Signature(
    inputs=[TensorSpec(name="input", datatype=DataType.FP32, shape=[-1, 64])],
    outputs=[
        TensorSpec(name="logits", datatype=DataType.FP32, shape=[-1, 10]),
        TensorSpec(name="probabilities", datatype=DataType.FP32, shape=[-1, 10]),
    ],
)


@pytest.fixture(scope="module")
def trained() -> tuple[Any, np.ndarray, np.ndarray]:
    return train_digits_mlp(seed=0)


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory: pytest.TempPathFactory, trained: tuple[Any, np.ndarray, np.ndarray]) -> Path:
    path = tmp_path_factory.mktemp("digits") / "digits.onnx"
    export_mlp_onnx(trained[0], path)
    return path


def test_training_data_and_holdout_accuracy(trained: tuple[Any, np.ndarray, np.ndarray]) -> None:
    clf, x, y = trained
    assert x.dtype == np.float32 and x.shape == (1797, 64) and y.shape == (1797,)
    assert x.min() >= 0.0 and x.max() <= 1.0
    _, x_test, _, y_test = digits_split(seed=0)
    assert clf.score(x_test, y_test) > 0.95


def test_onnx_matches_sklearn(onnx_path: Path, trained: tuple[Any, np.ndarray, np.ndarray]) -> None:
    clf, x, _ = trained
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    logits, probabilities = session.run(["logits", "probabilities"], {"input": x})
    agreement = float(np.mean(logits.argmax(axis=1) == clf.predict(x)))
    assert agreement >= 0.999
    np.testing.assert_allclose(probabilities, clf.predict_proba(x), atol=1e-5)


def test_signature_and_runtime_load(onnx_path: Path, trained: tuple[Any, np.ndarray, np.ndarray]) -> None:
    assert inspect_onnx_signature(onnx_path) == EXPECTED_SIGNATURE
    model = load_model("onnx", onnx_path, None, 1)
    assert model.signature == EXPECTED_SIGNATURE
    row = np.asarray([sample_row()], dtype=np.float32)
    out = model.run({"input": row})
    assert out["probabilities"].shape == (1, 10)
    assert int(out["logits"].argmax()) == int(trained[0].predict(row)[0])


def test_build_example(tmp_path: Path) -> None:
    path = build_example(tmp_path / "models")
    assert path == tmp_path / "models" / "digits.onnx" and path.is_file()
    assert inspect_onnx_signature(path) == EXPECTED_SIGNATURE


def test_sample_row() -> None:
    row = sample_row()
    assert len(row) == 64 and all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in row)


def test_example_module_does_not_import_torch() -> None:
    code = (
        "import sys; import modelfleet.examples.digits as d; d.sample_row(); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
