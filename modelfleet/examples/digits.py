"""The example model of ``make up``: an sklearn MLP on the 8x8 digits, exported to ONNX by hand.

No torch needed: the network is trained with scikit-learn and the ONNX graph is written with
``onnx.helper`` from the fitted weights (input ``input`` FLOAT[batch, 64] with pixel values
scaled to [0, 1]; outputs ``logits`` and ``probabilities`` FLOAT[batch, 10]).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "build_example",
    "digits_data",
    "digits_split",
    "export_mlp_onnx",
    "sample_row",
    "train_digits_mlp",
]

OPSET = 17
IR_VERSION = 9
MIN_HOLDOUT_ACCURACY = 0.95


def digits_data() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """The sklearn digits: X float32 [n, 64] scaled by 1/16 into [0, 1], y int64 [n]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (np.asarray(digits.data, dtype=np.float32) / np.float32(16.0)).astype(np.float32)
    return x, np.asarray(digits.target, dtype=np.int64)


def digits_split(
    seed: int = 0,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """A stratified 80/20 split: (X_train, X_test, y_train, y_test)."""
    from sklearn.model_selection import train_test_split

    x, y = digits_data()
    parts = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    return parts[0], parts[1], parts[2], parts[3]


def train_digits_mlp(seed: int = 0) -> tuple[Any, npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Train ``MLPClassifier((64,))`` on the training split of :func:`digits_split`.

    Returns ``(clf, X, y)`` with X and y the whole data set. Raises RuntimeError if the held-out
    accuracy is not above 0.95.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    x_train, x_test, y_train, y_test = digits_split(seed)
    clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=300, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x_train, y_train)
    accuracy = float(clf.score(x_test, y_test))
    if accuracy <= MIN_HOLDOUT_ACCURACY:
        raise RuntimeError(f"digits MLP held-out accuracy {accuracy:.3f} is not above {MIN_HOLDOUT_ACCURACY}")
    x, y = digits_data()
    return clf, x, y


def export_mlp_onnx(clf: Any, path: Path) -> None:
    """Write the fitted one-hidden-layer ReLU MLP as ONNX: Gemm -> Relu -> Gemm (+ Softmax)."""
    coefs: list[npt.NDArray[Any]] = list(clf.coefs_)
    intercepts: list[npt.NDArray[Any]] = list(clf.intercepts_)
    if len(coefs) != 2 or getattr(clf, "activation", "relu") != "relu":
        raise ValueError("export_mlp_onnx supports one hidden ReLU layer only")
    if getattr(clf, "out_activation_", "softmax") != "softmax":
        raise ValueError("export_mlp_onnx supports multi-class (softmax) classifiers only")
    n_in, n_out = coefs[0].shape[0], coefs[1].shape[1]

    def weight(name: str, value: npt.NDArray[Any]) -> TensorProto:
        return numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), name)

    initializers = [
        weight("W1", coefs[0]),
        weight("B1", intercepts[0]),
        weight("W2", coefs[1]),
        weight("B2", intercepts[1]),
    ]
    nodes = [
        helper.make_node("Gemm", ["input", "W1", "B1"], ["hidden_pre"], name="dense1"),
        helper.make_node("Relu", ["hidden_pre"], ["hidden"], name="relu1"),
        helper.make_node("Gemm", ["hidden", "W2", "B2"], ["logits"], name="dense2"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "digits_mlp",
        inputs=[helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", n_in])],
        outputs=[
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_out]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", n_out]),
        ],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="modelfleet.examples.digits",
    )
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))


def build_example(dir: Path) -> Path:
    """Train the digits MLP and write ``dir/digits.onnx``; returns its path."""
    clf, _, _ = train_digits_mlp()
    path = Path(dir) / "digits.onnx"
    export_mlp_onnx(clf, path)
    return path


def sample_row() -> list[float]:
    """The first digits image, scaled like the training data (64 floats), for a curl example."""
    x, _ = digits_data()
    return [float(v) for v in x[0]]
