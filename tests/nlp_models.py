"""Tiny BERT models for the NLP tasks, exported as Elasticsearch would get them.

* ``ner_bert()``: a BertForTokenClassification whose weights are set by hand so that every
  token gets a known IOB label (``TOKEN_LABELS``) with probability ~0.975, so entity merging
  can be asserted exactly through a real BERT graph.
* ``classifier_bert(seed)``: a BertForSequenceClassification with random weights (3 classes).

``save_torchscript`` traces a model eland-style (positional input_ids, attention_mask,
token_type_ids, position_ids; the logits tensor out); ``save_onnx`` uses the legacy exporter
with the inputs named, so a model may declare fewer inputs than Elasticsearch provides.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from transformers import BertConfig, BertForSequenceClassification, BertForTokenClassification

__all__ = [
    "CLASS_LABELS",
    "ELAND_INPUTS",
    "NER_LABELS",
    "TINY_VOCABULARY",
    "TOKEN_LABELS",
    "classifier_bert",
    "ner_bert",
    "save_onnx",
    "save_torchscript",
    "torch_logits",
]

TINY_VOCABULARY = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "jane", "doe", "works", "at", "elastic", "##search", "in", "mountain", "view", ",", "california",
    ".", "the", "film", "was", "great", "terrible", "ok", "!", "##s", "a", "is", "and",
]  # fmt: skip
# HuggingFace-style labels (dashes), in a model-specific order.
NER_LABELS = ["O", "B-MISC", "I-MISC", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
TOKEN_LABELS = {
    "jane": "B-PER",
    "doe": "I-PER",
    "elastic": "B-ORG",
    "##search": "B-ORG",
    "mountain": "B-LOC",
    "view": "I-LOC",
    "california": "B-LOC",
}
CLASS_LABELS = ["negative", "neutral", "positive"]
ELAND_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")
HIDDEN = 32


def _config(num_labels: int) -> BertConfig:
    options: dict[str, Any] = {"num_labels": num_labels, "attn_implementation": "eager"}
    return BertConfig(
        vocab_size=len(TINY_VOCABULARY),
        hidden_size=HIDDEN,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=48,
        max_position_embeddings=64,
        **options,
    )


def ner_bert() -> BertForTokenClassification:
    """Token ``t`` is labelled ``TOKEN_LABELS.get(t, "O")`` whatever its context.

    The encoder layer's output projections are zero, so the residual path carries the layer-
    normalised word embedding through unchanged; each word embedding is a one-hot vector at its
    label's index and the classifier reads that index back.
    """
    model = BertForTokenClassification(_config(len(NER_LABELS)))
    model.train(False)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.fill_(1.0)
        for token_id, token in enumerate(TINY_VOCABULARY):
            label = NER_LABELS.index(TOKEN_LABELS.get(token, "O"))
            model.bert.embeddings.word_embeddings.weight[token_id, label] = 1.0
        for label in range(len(NER_LABELS)):
            model.classifier.weight[label, label] = 1.0
    return model


def classifier_bert(seed: int = 0) -> BertForSequenceClassification:
    """Random weights; the classifier is scaled up so the class probabilities differ clearly."""
    torch.manual_seed(seed)
    model = BertForSequenceClassification(_config(len(CLASS_LABELS)))
    model.train(False)
    with torch.no_grad():
        model.classifier.weight.mul_(100.0)
    return model


class _Logits(torch.nn.Module):
    """The logits of a HuggingFace model from the named inputs only, positionally."""

    def __init__(self, model: torch.nn.Module, input_names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.input_names = input_names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(**dict(zip(self.input_names, inputs, strict=True))).logits
        return logits


def _example(input_names: tuple[str, ...]) -> tuple[torch.Tensor, ...]:
    values = {
        "input_ids": torch.tensor([[2, 5, 6, 3], [2, 9, 10, 3]]),
        "attention_mask": torch.ones(2, 4, dtype=torch.int64),
        "token_type_ids": torch.zeros(2, 4, dtype=torch.int64),
        "position_ids": torch.arange(4).repeat(2, 1),
    }
    return tuple(values[name] for name in input_names)


def save_torchscript(model: torch.nn.Module, path: Path) -> None:
    wrapper = _Logits(model, ELAND_INPUTS).eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(wrapper, _example(ELAND_INPUTS))  # type: ignore[no-untyped-call]
    traced.save(str(path))


def save_onnx(model: torch.nn.Module, path: Path, input_names: tuple[str, ...] = ELAND_INPUTS) -> None:
    wrapper = _Logits(model, input_names).eval()
    dynamic = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            _example(input_names),
            str(path),
            dynamo=False,
            input_names=list(input_names),
            output_names=["logits"],
            dynamic_axes={**{name: dynamic for name in input_names}, "logits": {0: "batch"}},
            opset_version=17,
        )


def torch_logits(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    """The model's logits for one sequence of token ids (reference for the exported files)."""
    with torch.no_grad():
        logits: torch.Tensor = model(input_ids=torch.tensor([ids])).logits
    return logits
