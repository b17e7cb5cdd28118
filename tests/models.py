"""Test models built with torch: a small digits MLP exported to ONNX and to TorchScript."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from modelfleet.examples.digits import digits_data
from schemas.tensors import DataType, Signature, TensorSpec

__all__ = [
    "export_torch_onnx",
    "export_torchscript",
    "reference_argmax",
    "torchscript_signature",
    "train_torch_digits",
]


def train_torch_digits(
    seed: int = 0, epochs: int = 20
) -> tuple[torch.nn.Module, npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """An MLP 64-64-10 trained full batch with Adam on the digits (/16); in eval mode."""
    torch.manual_seed(seed)
    x, y = digits_data()
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    features, targets = torch.from_numpy(x), torch.from_numpy(y)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = loss_fn(model(features), targets)
        loss.backward()
        optimizer.step()
    model.eval()
    return model, x, y


def export_torch_onnx(model: torch.nn.Module, path: Path) -> None:
    """Legacy (TorchScript-based) ONNX export to a single file, dynamic batch."""
    path = Path(path)
    example = (torch.zeros(2, 64, dtype=torch.float32),)
    before = set(path.parent.iterdir())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            example,
            str(path),
            dynamo=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
        )
    extra = set(path.parent.iterdir()) - before - {path}
    if extra:
        raise AssertionError(f"ONNX export wrote extra files: {sorted(p.name for p in extra)}")


def export_torchscript(model: torch.nn.Module, path: Path) -> None:
    """``torch.jit.trace`` with a batch-2 example, saved to ``path``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(model, torch.zeros(2, 64, dtype=torch.float32))  # type: ignore[no-untyped-call]
    traced.save(str(path))


def torchscript_signature() -> Signature:
    return Signature(
        inputs=[TensorSpec(name="input", datatype=DataType.FP32, shape=[-1, 64])],
        outputs=[TensorSpec(name="logits", datatype=DataType.FP32, shape=[-1, 10])],
    )


def torch_logits(model: torch.nn.Module, x: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    with torch.inference_mode():
        out: npt.NDArray[np.float32] = model(torch.from_numpy(np.ascontiguousarray(x))).numpy()
    return out


def reference_argmax(model: torch.nn.Module, x: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    return np.asarray(torch_logits(model, x).argmax(axis=1), dtype=np.int64)
