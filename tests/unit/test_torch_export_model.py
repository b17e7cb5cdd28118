"""torch.export programs (``.pt2``) load without torch.export.load and match eager PyTorch."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelfleet.runtime.backends import LoadedModel, load_model
from modelfleet.runtime.errors import ModelLoadError, ModelRuntimeError
from modelfleet.runtime.torch_export_model import inspect_torch_export_signature
from modelfleet.runtime.torch_export_safety import check_torch_export_archive
from schemas.tensors import DataType, Signature, TensorSpec
from tests.models import train_torch_digits


def _export(
    module: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path, dynamic: bool = True
) -> Path:
    shapes = (
        tuple({0: torch.export.Dim(f"batch{i}", max=4096)} for i in range(len(example))) if dynamic else None
    )
    torch.export.save(torch.export.export(module.eval(), example, dynamic_shapes=shapes), str(path))
    return path


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, np.ndarray, Path]:
    model, x, _ = train_torch_digits(seed=0)
    path = _export(model, (torch.from_numpy(x[:2]),), tmp_path_factory.mktemp("pt2") / "digits.pt2")
    return model, x, path


@pytest.fixture
def restore_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _eager(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        out: np.ndarray = model(torch.from_numpy(x)).numpy()
    return out


def test_the_digits_mlp_matches_eager_pytorch(
    digits: tuple[torch.nn.Module, np.ndarray, Path], restore_threads: None
) -> None:
    model, x, path = digits
    loaded = load_model("torch_export", path, None, 2)
    assert torch.get_num_threads() == 2  # threads honoured, as for TorchScript
    assert loaded.signature == Signature(
        inputs=[TensorSpec(name="input", datatype=DataType.FP32, shape=[-1, 64])],
        outputs=[TensorSpec(name=loaded.signature.outputs[0].name, datatype=DataType.FP32, shape=[-1, 10])],
    )
    (out,) = loaded.run({"input": x}).values()
    np.testing.assert_allclose(out, _eager(model, x), rtol=1e-5, atol=1e-5)
    assert (out.argmax(axis=1) == _eager(model, x).argmax(axis=1)).all()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.integers(min_value=1, max_value=300), start=st.integers(min_value=0, max_value=1400))
def test_any_batch_size_matches_eager(
    digits: tuple[torch.nn.Module, np.ndarray, Path], batch: int, start: int
) -> None:
    model, x, path = digits
    loaded = _cached(path)
    rows = x[start : start + batch]
    (out,) = loaded.run({"input": rows}).values()
    np.testing.assert_allclose(out, _eager(model, rows), rtol=1e-5, atol=1e-5)


_LOADED: dict[Path, LoadedModel] = {}


def _cached(path: Path) -> LoadedModel:
    if path not in _LOADED:
        _LOADED[path] = load_model("torch_export", path, None, 1)
    return _LOADED[path]


def test_the_commit_time_signature_equals_the_loaded_one(
    digits: tuple[torch.nn.Module, np.ndarray, Path],
) -> None:
    assert inspect_torch_export_signature(digits[2]) == _cached(digits[2]).signature


def test_a_given_signature_names_the_outputs_by_position(
    digits: tuple[torch.nn.Module, np.ndarray, Path],
) -> None:
    model, x, path = digits
    given = Signature(
        inputs=[TensorSpec(name="input", datatype=DataType.FP32, shape=[-1, 64])],
        outputs=[TensorSpec(name="logits", datatype=DataType.FP32, shape=[-1, 10])],
    )
    loaded = load_model("torch_export", path, given, 1)
    assert loaded.signature == given
    np.testing.assert_allclose(
        loaded.run({"input": x[:5]})["logits"], _eager(model, x[:5]), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize(
    ("inputs", "outputs", "message"),
    [
        ([("x", DataType.FP32, [-1, 64])], [("y", DataType.FP32, [-1, 10])], "do not match the model inputs"),
        (
            [("input", DataType.INT64, [-1, 64])],
            [("y", DataType.FP32, [-1, 10])],
            "signature input 'input' is INT64",
        ),
        ([("input", DataType.FP32, [-1, 64])], [("y", DataType.FP32, [-1, 3])], "signature output 'y'"),
        ([("input", DataType.FP32, [-1, 64])], [("y", DataType.FP32, [-1, 10])] * 2, "declares 2 outputs"),
    ],
)
def test_a_signature_that_disagrees_with_the_program_is_refused(
    digits: tuple[torch.nn.Module, np.ndarray, Path],
    inputs: list[tuple[str, DataType, list[int]]],
    outputs: list[tuple[str, DataType, list[int]]],
    message: str,
) -> None:
    signature = Signature(
        inputs=[TensorSpec(name=n, datatype=d, shape=s) for n, d, s in inputs],
        outputs=[TensorSpec(name=n, datatype=d, shape=s) for n, d, s in outputs],
    )
    with pytest.raises(ModelLoadError, match=message):
        load_model("torch_export", digits[2], signature, 1)


def test_concurrent_runs_share_one_module(digits: tuple[torch.nn.Module, np.ndarray, Path]) -> None:
    model, x, path = digits
    loaded = _cached(path)
    expected = _eager(model, x[:64])
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                results.append(next(iter(loaded.run({"input": x[:64]}).values())))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and len(results) == 80
    for out in results:
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


class _Tied(torch.nn.Module):
    """Tied weights (one storage, two names), a non-persistent buffer and a lifted constant,
    two outputs, an integer input: every payload path of the format."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(12, 6)
        self.head = torch.nn.Linear(6, 12, bias=False)
        self.head.weight = self.embed.weight
        self.register_buffer("shift", torch.linspace(-1, 1, 6), persistent=False)
        self.scale = torch.full((6,), 0.5)  # a plain tensor attribute: a lifted constant

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.embed(tokens).mean(dim=1) * self.scale + self.shift
        return self.head(hidden), hidden


def test_tied_weights_buffers_constants_and_two_outputs(tmp_path: Path) -> None:
    torch.manual_seed(1)
    module = _Tied().eval()
    tokens = torch.randint(0, 12, (3, 5))
    path = _export(module, (tokens,), tmp_path / "tied.pt2")
    verified = check_torch_export_archive(path)
    assert len(verified.weights) == 2 and verified.constants  # embed.weight and head.weight, + constants
    loaded = load_model("torch_export", path, None, 1)
    assert [s.datatype for s in loaded.signature.inputs] == [DataType.INT64]
    assert len(loaded.signature.outputs) == 2
    batch = torch.randint(0, 12, (7, 5))
    logits, hidden = loaded.run({loaded.signature.inputs[0].name: batch.numpy()}).values()
    with torch.inference_mode():
        want_logits, want_hidden = module(batch)
    np.testing.assert_allclose(logits, want_logits.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hidden, want_hidden.numpy(), rtol=1e-5, atol=1e-6)


def test_a_static_program_refuses_another_batch_size(tmp_path: Path) -> None:
    path = _export(torch.nn.Linear(4, 2), (torch.zeros(3, 4),), tmp_path / "static.pt2", dynamic=False)
    loaded = load_model("torch_export", path, None, 1)
    assert loaded.signature.inputs[0].shape == [3, 4]
    assert loaded.run({"input": np.ones((3, 4), np.float32)})[loaded.signature.outputs[0].name].shape == (
        3,
        2,
    )
    with pytest.raises(ModelRuntimeError, match="inference failed"):
        loaded.run({"input": np.ones((5, 4), np.float32)})


def test_a_closed_model_refuses_to_run(digits: tuple[torch.nn.Module, np.ndarray, Path]) -> None:
    loaded = load_model("torch_export", digits[2], None, 1)
    loaded.close()
    with pytest.raises(ModelRuntimeError, match="closed"):
        loaded.run({"input": digits[1][:1]})
