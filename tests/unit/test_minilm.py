"""all-MiniLM-L6-v2 exported to ONNX and served as an Elasticsearch text_embedding model.

The whole path is checked against the SentenceTransformer itself: our tokenizer built from the
vocabulary list (not from tokenizer.json), the ONNX file run by onnxruntime, our result decoder.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from modelfleet.examples.minilm import EMBEDDING_DIM, MiniLmExport, export_minilm_onnx
from modelfleet.runtime.backends import LoadedModel, load_model
from modelfleet.runtime.nlp import TextTask
from schemas.nodes import NlpTask
from schemas.tensors import DataType

SENTENCES = [
    "Elasticsearch is a distributed search and analytics engine.",
    "Hello, world!!! (punctuation; everywhere?) — yes: \"quotes\" & 'apostrophes'...",
    "Crème brûlée, naïve façade, Ærøskøbing and São Paulo",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "a",
    " ".join(["The long document keeps going and going."] * 60),  # far beyond 256 tokens
]


@pytest.fixture(scope="module")
def served(minilm_export: MiniLmExport) -> tuple[LoadedModel, TextTask]:
    loaded = load_model("onnx", minilm_export.model_path, None, threads=2)
    ((task_type, config),) = minilm_export.inference_config.items()
    task = TextTask(
        NlpTask(task_type=task_type, task_config=config),
        {"vocabulary": minilm_export.vocabulary},
        loaded.signature,
    )
    return loaded, task


def test_export_has_the_declared_signature(
    minilm_export: MiniLmExport, served: tuple[LoadedModel, TextTask]
) -> None:
    loaded, _ = served
    assert [(s.name, s.datatype, s.shape) for s in loaded.signature.inputs] == [
        (name, DataType.INT64, [-1, -1]) for name in ("input_ids", "attention_mask", "token_type_ids")
    ]
    assert [(s.name, s.shape) for s in loaded.signature.outputs] == [
        ("sentence_embedding", [-1, EMBEDDING_DIM])
    ]
    assert len(minilm_export.vocabulary) == 30522 and minilm_export.vocabulary[100:103] == [
        "[UNK]",
        "[CLS]",
        "[SEP]",
    ]
    assert minilm_export.inference_config == {
        "text_embedding": {
            "tokenization": {
                "bert": {
                    "do_lower_case": True,
                    "max_sequence_length": 256,
                    "truncate": "first",
                    "with_special_tokens": True,
                }
            }
        }
    }


def test_embeddings_match_sentence_transformers(
    served: tuple[LoadedModel, TextTask], minilm_reference: Any
) -> None:
    loaded, task = served
    expected = minilm_reference.encode(SENTENCES, convert_to_numpy=True)
    reference_ids = minilm_reference.tokenizer(SENTENCES, truncation=True, max_length=256)["input_ids"]
    docs = task.encode([{"text_field": text} for text in SENTENCES])
    for index, (doc, want, ids) in enumerate(zip(docs, expected, reference_ids, strict=True)):
        assert doc.tokens.ids.tolist() == ids
        result = task.decode(doc, loaded.run(doc.inputs))
        vector = np.asarray(result["predicted_value"])
        assert vector.shape == (EMBEDDING_DIM,)
        cosine = float(vector @ want / (np.linalg.norm(vector) * np.linalg.norm(want)))
        assert cosine >= 0.999, doc.text[:40]
        long_one = index == len(SENTENCES) - 1
        assert result.get("is_truncated", False) is long_one and doc.truncated is long_one
    assert docs[-1].length == 256


def test_batched_documents_match_single_ones(served: tuple[LoadedModel, TextTask]) -> None:
    loaded, task = served
    docs = task.encode([{"text_field": text} for text in SENTENCES[:4]])
    outputs = task.split_outputs(loaded.run(task.stack_inputs(docs)), docs)
    for doc, output in zip(docs, outputs, strict=True):
        batched = np.asarray(task.decode(doc, output)["predicted_value"])
        single = np.asarray(task.decode(doc, loaded.run(doc.inputs))["predicted_value"])
        assert np.allclose(batched, single, atol=1e-5)


def test_an_existing_export_is_reused(minilm_export: MiniLmExport) -> None:
    before = minilm_export.model_path.stat().st_mtime_ns
    again = export_minilm_onnx(minilm_export.model_path.parent)
    assert again.model_path == minilm_export.model_path
    assert again.source_digest == minilm_export.source_digest
    assert again.model_path.stat().st_mtime_ns == before
