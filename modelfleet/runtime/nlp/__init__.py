"""Elasticsearch NLP models on a worker: tokenize text, build model inputs, decode task results.

Public API (see ``tasks.py`` for the flow)::

    TextTask(spec, vocabulary, signature, cache_namespace=b"")
        .encode(docs, override) -> list[EncodedDoc]      # NlpInputError for a bad document/override
        .encode_doc(doc, settings) / .effective_settings(override)
        .decode(doc, outputs) -> dict                    # Elasticsearch's result for one document
        .stack_inputs(docs) / .split_outputs(outputs, docs)   # optional batching of documents
    nlp_signature(spec, model_format) -> Signature   # what to declare for TorchScript

Supported: task types pass_through, text_embedding, text_classification, ner; tokenization bert
and mpnet. Anything else Elasticsearch knows raises UnsupportedNlpTaskError.
"""

from modelfleet.runtime.nlp.config import SUPPORTED_TASKS, TaskSettings, TaskType, apply_override, parse_task
from modelfleet.runtime.nlp.tasks import EncodedDoc, TextTask, extract_input, nlp_signature
from modelfleet.runtime.nlp.tokenization import (
    SUPPORTED_TOKENIZATIONS,
    TextTokenizer,
    TokenizationKind,
    TokenizationSettings,
    Truncate,
    parse_tokenization,
)

__all__ = [
    "SUPPORTED_TASKS",
    "SUPPORTED_TOKENIZATIONS",
    "EncodedDoc",
    "TaskSettings",
    "TaskType",
    "TextTask",
    "TextTokenizer",
    "TokenizationKind",
    "TokenizationSettings",
    "Truncate",
    "apply_override",
    "extract_input",
    "nlp_signature",
    "parse_task",
    "parse_tokenization",
]
