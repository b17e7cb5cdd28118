"""Text in, Elasticsearch task results out: what a worker runs around an NLP model.

The model call stays with the caller, so it can batch and cache::

    task = TextTask(spec, vocabulary, loaded.signature)
    for doc in task.encode(request["docs"], request.get("inference_config")):
        outputs = loaded.run(doc.inputs)                  # or cache.get(doc.cache_key)
        result = task.decode(doc, outputs)

``encode`` reads each document's input field, tokenizes it with the model's (possibly
overridden) settings and builds the tensors the model's signature declares, by name, from
``input_ids``, ``attention_mask``, ``token_type_ids`` and ``position_ids`` (batch dimension 1).
``decode`` turns the model's first output into the result Elasticsearch would return.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from modelfleet.runtime.errors import NlpConfigError, NlpInputError
from modelfleet.runtime.nlp.config import TaskSettings, TaskType, apply_override, parse_task
from modelfleet.runtime.nlp.es_text import java_str
from modelfleet.runtime.nlp.results import (
    es_prediction,
    ner_result,
    pass_through_result,
    text_classification_result,
    text_embedding_result,
)
from modelfleet.runtime.nlp.tokenization import MODEL_INPUT_NAMES, TextTokenizer, Tokens
from schemas.nodes import NlpTask
from schemas.tensors import DataType, Signature, TensorSpec

__all__ = ["EncodedDoc", "TextTask", "extract_input", "nlp_signature"]

_INPUT_DTYPES: dict[DataType, type[np.integer[Any]]] = {DataType.INT64: np.int64, DataType.INT32: np.int32}
# Output rank declared for a TorchScript model; only names are checked at run time, and
# decoding accepts a 2-D or 3-D output for every task, as Elasticsearch does.
_OUTPUT_SHAPES = {
    TaskType.TEXT_EMBEDDING: [-1, -1],
    TaskType.TEXT_CLASSIFICATION: [-1, -1],
    TaskType.NER: [-1, -1, -1],
    TaskType.PASS_THROUGH: [-1, -1, -1],
}


def nlp_signature(spec: NlpTask, model_format: str) -> Signature:
    """The signature to declare for an Elasticsearch ``pytorch`` (TorchScript) model.

    An eland-traced TorchScript model takes Elasticsearch's tensors positionally: input_ids,
    attention_mask, token_type_ids, position_ids for ``bert`` (the first two for ``mpnet``), all
    INT64 [batch, sequence]; its first output is the result. An ONNX model declares its own
    signature (read it from the file), so asking for one is a ValueError. Raises NlpConfigError
    for a bad ``inference_config``.
    """
    settings = parse_task(spec.task_type, spec.task_config)
    if str(model_format) == "onnx":
        raise ValueError("an ONNX model's signature is read from the model file")
    names = MODEL_INPUT_NAMES[settings.tokenization.kind]
    return Signature(
        inputs=[TensorSpec(name=name, datatype=DataType.INT64, shape=[-1, -1]) for name in names],
        outputs=[TensorSpec(name="output", datatype=DataType.FP32, shape=_OUTPUT_SHAPES[settings.task_type])],
    )


def _lookup(document: object, parts: Sequence[str]) -> object:
    """Elasticsearch's dotted-path lookup: ``a.b`` matches ``{"a": {"b": v}}`` or ``{"a.b": v}``."""
    if not parts:
        return document
    if not isinstance(document, Mapping):
        return None
    for end in range(1, len(parts) + 1):
        key = ".".join(parts[:end])
        if key in document:
            found = _lookup(document[key], parts[end:])
            if found is not None:
                return found
    return None


def extract_input(document: Mapping[str, Any], field_name: str) -> str:
    """The text of ``field_name`` in one ``_infer`` document (NlpInputError as Elasticsearch)."""
    value = _lookup(document, field_name.split("."))
    if value is None:
        raise NlpInputError(f"Input field [{field_name}] does not exist in the source document")
    if not isinstance(value, str):
        raise NlpInputError(f"Input value [{java_str(value)}] for field [{field_name}] must be a string")
    return value


@dataclass(frozen=True, slots=True)
class EncodedDoc:
    """One document ready for the model.

    ``inputs`` are the model's tensors (batch dimension 1). ``cache_key`` identifies the result:
    a digest of the cache namespace, the effective settings (including any request override),
    the token ids, and for ``ner`` the text (entity strings and offsets come from it); other
    inputs are derived from the ids. ``settings`` travel with the document so ``decode`` applies
    the same override.
    """

    inputs: dict[str, npt.NDArray[Any]]
    cache_key: bytes
    text: str
    tokens: Tokens
    settings: TaskSettings

    @property
    def truncated(self) -> bool:
        return self.tokens.truncated

    @property
    def length(self) -> int:
        return len(self.tokens.ids)


@functools.lru_cache(maxsize=256)
def _settings_digest(settings: TaskSettings) -> bytes:
    return hashlib.blake2b(repr(settings).encode(), digest_size=16).digest()


class TextTask:
    """One NLP model's tokenizer and result decoder (thread-safe; build once per loaded model).

    ``vocabulary`` is the uploaded vocabulary document (``{"vocabulary": [...], ...}``);
    ``signature`` the loaded model's. ``cache_namespace`` is mixed into every cache key so one
    cache can serve several models. Raises NlpConfigError (a ModelLoadError) when the
    configuration, the vocabulary or the signature cannot work.
    """

    def __init__(
        self,
        spec: NlpTask,
        vocabulary: Mapping[str, Any],
        signature: Signature,
        *,
        cache_namespace: bytes = b"",
    ) -> None:
        self.settings = parse_task(spec.task_type, spec.task_config)
        if not spec.field_names:
            raise NlpConfigError("[field_names] must name the input field")
        self.field_name = spec.field_names[0]
        words = vocabulary.get("vocabulary") if isinstance(vocabulary, Mapping) else None
        if not isinstance(words, list) or not words or not all(isinstance(word, str) for word in words):
            raise NlpConfigError("[vocabulary] must be a non-empty list of strings")
        self.tokenizer = TextTokenizer(words, self.settings.tokenization)
        self._feeds = self._input_feeds(signature)
        self.output_name = signature.outputs[0].name
        self._namespace = cache_namespace

    def _input_feeds(self, signature: Signature) -> list[tuple[str, type[np.integer[Any]]]]:
        known = MODEL_INPUT_NAMES[self.settings.tokenization.kind]
        feeds: list[tuple[str, type[np.integer[Any]]]] = []
        for spec in signature.inputs:
            if spec.name not in known:
                raise NlpConfigError(
                    f"model input [{spec.name}] is not one of the inputs Elasticsearch provides for "
                    f"[{self.settings.tokenization.kind.value}] tokenization: [{', '.join(known)}]"
                )
            dtype = _INPUT_DTYPES.get(spec.datatype)
            if dtype is None or len(spec.shape) != 2:
                raise NlpConfigError(
                    f"model input [{spec.name}] must be INT64 or INT32 [batch, sequence]; the model has "
                    f"{spec.datatype.value}{spec.shape}"
                )
            feeds.append((spec.name, dtype))
        return feeds

    def effective_settings(self, override: Mapping[str, Any] | None) -> TaskSettings:
        """The model's settings with a request's ``inference_config`` applied (NlpInputError)."""
        return apply_override(self.settings, override)

    def encode(
        self, docs: Sequence[Mapping[str, Any]], override: Mapping[str, Any] | None = None
    ) -> list[EncodedDoc]:
        """Every document of an ``_infer`` request, in order; the first bad one raises NlpInputError."""
        settings = self.effective_settings(override)
        return [self.encode_doc(doc, settings) for doc in docs]

    def encode_doc(self, doc: Mapping[str, Any], settings: TaskSettings | None = None) -> EncodedDoc:
        """One document with ``settings`` (default: the model's), for per-document error handling."""
        settings = self.settings if settings is None else settings
        if not isinstance(doc, Mapping):
            raise NlpInputError(f"each document must be an object; got [{java_str(doc)}]")
        text = extract_input(doc, self.field_name)
        tokens = self.tokenizer.tokenize(text, settings.tokenization.truncate)
        ids = tokens.ids
        inputs = {
            name: _input_row(name, ids, len(ids)).astype(dtype, copy=False) for name, dtype in self._feeds
        }
        digest = hashlib.blake2b(self._namespace, digest_size=16)
        digest.update(_settings_digest(settings))
        digest.update(ids.tobytes())
        if settings.task_type is TaskType.NER:
            digest.update(text.encode("utf-8", "surrogatepass"))
        return EncodedDoc(
            inputs=inputs, cache_key=digest.digest(), text=text, tokens=tokens, settings=settings
        )

    def decode(self, doc: EncodedDoc, outputs: Mapping[str, npt.NDArray[Any]]) -> dict[str, Any]:
        """The Elasticsearch result of one document from its model outputs (NlpOutputError)."""
        prediction = es_prediction(outputs[self.output_name])
        settings = doc.settings
        task = settings.task_type
        if task is TaskType.TEXT_EMBEDDING:
            return text_embedding_result(prediction, settings.results_field, doc.truncated)
        if task is TaskType.PASS_THROUGH:
            return pass_through_result(prediction, settings.results_field, doc.truncated)
        if task is TaskType.TEXT_CLASSIFICATION:
            return text_classification_result(
                prediction,
                settings.classification_labels,
                settings.num_top_classes,
                settings.results_field,
                doc.truncated,
            )
        encoding = doc.tokens.encoding
        return ner_result(
            prediction,
            doc.text,
            encoding.word_ids,
            encoding.offsets,
            settings.iob_tags,
            settings.results_field,
            doc.truncated,
            settings.tokenization.do_lower_case,
        )

    # -- batching several documents into one model run -----------------------------------------

    def stack_inputs(self, docs: Sequence[EncodedDoc]) -> dict[str, npt.NDArray[Any]]:
        """One batch of ``docs``, right-padded to the longest (pad id, mask 0), as Elasticsearch pads."""
        longest = max(doc.length for doc in docs)
        batch: dict[str, npt.NDArray[Any]] = {}
        for name, dtype in self._feeds:
            fill = self.tokenizer.pad_token_id if name == "input_ids" else 0
            stacked = np.full((len(docs), longest), fill, dtype=dtype)
            for row, doc in enumerate(docs):
                stacked[row, : doc.length] = doc.inputs[name][0]
            if name == "position_ids":  # Elasticsearch sends 0..longest-1 on every row
                stacked[:] = np.arange(longest, dtype=dtype)
            batch[name] = stacked
        return batch

    def split_outputs(
        self, outputs: Mapping[str, npt.NDArray[Any]], docs: Sequence[EncodedDoc]
    ) -> list[dict[str, npt.NDArray[Any]]]:
        """Per-document outputs of a ``stack_inputs`` batch: row ``i``, and for outputs of rank 3
        or more whose second dimension is the padded length, only the document's own tokens."""
        longest = max(doc.length for doc in docs)
        per_doc: list[dict[str, npt.NDArray[Any]]] = []
        for row, doc in enumerate(docs):
            own: dict[str, npt.NDArray[Any]] = {}
            for name, array in outputs.items():
                part = array[row : row + 1]
                if part.ndim >= 3 and part.shape[1] == longest:
                    part = part[:, : doc.length]
                own[name] = part
            per_doc.append(own)
        return per_doc


def _input_row(name: str, ids: npt.NDArray[np.int64], length: int) -> npt.NDArray[np.int64]:
    if name == "input_ids":
        return ids.reshape(1, length)
    if name == "attention_mask":
        return np.ones((1, length), dtype=np.int64)
    if name == "token_type_ids":
        return np.zeros((1, length), dtype=np.int64)
    return np.arange(length, dtype=np.int64).reshape(1, length)  # position_ids
