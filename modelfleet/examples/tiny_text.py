"""A tiny text classifier for the `_ml` face, written with onnx.helper (no torch, no download).

Token ids → embedding (Gather) → masked mean over the sequence → linear → 3 logits. Its weights are
random but fixed, so its predictions are deterministic; it exists to exercise the text path
(tokenization, routing, results, errors) cheaply, not to be accurate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "film", "was", "great", "bad", "ok", "!"]
LABELS = ["negative", "neutral", "positive"]
HIDDEN = 8


@dataclass(frozen=True)
class TinyTextModel:
    classifier_onnx: Path
    vocabulary: list[str]
    classifier_config: dict[str, Any]


def build_tiny_text_classifier(dest_dir: Path, seed: int = 0) -> TinyTextModel:
    rng = np.random.default_rng(seed)
    embedding = rng.standard_normal((len(VOCABULARY), HIDDEN)).astype(np.float32)
    weight = rng.standard_normal((HIDDEN, len(LABELS))).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["embedding", "input_ids"], ["embedded"]),  # [b, s, h]
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "last_axis"], ["mask3"]),  # [b, s, 1]
        helper.make_node("Mul", ["embedded", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "seq_axis"], ["summed"], keepdims=0),  # [b, h]
        helper.make_node("ReduceSum", ["mask3", "seq_axis"], ["count"], keepdims=0),  # [b, 1]
        helper.make_node("Max", ["count", "one"], ["count_safe"]),
        helper.make_node("Div", ["summed", "count_safe"], ["pooled"]),
        helper.make_node("MatMul", ["pooled", "weight"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_text_classifier",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(LABELS)])],
        initializer=[
            numpy_helper.from_array(embedding, "embedding"),
            numpy_helper.from_array(weight, "weight"),
            numpy_helper.from_array(np.array([2], dtype=np.int64), "last_axis"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "seq_axis"),
            numpy_helper.from_array(np.array([1.0], dtype=np.float32), "one"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / "tiny_text.onnx"
    onnx.save(model, str(path))
    config = {
        "text_classification": {
            "classification_labels": list(LABELS),
            "num_top_classes": 2,
            "tokenization": {"bert": {"do_lower_case": True, "max_sequence_length": 32}},
        }
    }
    return TinyTextModel(classifier_onnx=path, vocabulary=list(VOCABULARY), classifier_config=config)
