"""Model outputs to Elasticsearch inference results: pure functions of numpy arrays.

Elasticsearch's native process hands every output to Java as a 3-D array: a 3-D tensor as is, a
2-D tensor wrapped in one more array; other ranks and non-float types are errors. Each task
then reads its slice of that array (``es_prediction`` reproduces the conversion):

* ``text_embedding``: ``[0][0]``, one vector (the first token's for a 3-D output);
* ``pass_through``: ``[0]``, the raw nested lists;
* ``text_classification``: softmax of ``[0][0]``; labels ranked by probability (stable);
* ``ner``: softmax per token of ``[0]``; sub-word tokens of one word are averaged, the word gets
  the best IOB tag, and consecutive words of one entity merge (a ``B_`` tag starts a new one).

Result keys and their order follow Elasticsearch's JSON; ``is_truncated: true`` is added only
when the input was truncated. NER ``start_pos``/``end_pos`` count UTF-16 code units, as Java
string offsets do (they differ from Python indices only for characters beyond the BMP).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from modelfleet.runtime.errors import ModelRuntimeError, NlpOutputError
from modelfleet.runtime.nlp.es_text import java_str

__all__ = [
    "DEFAULT_IOB_TAGS",
    "IobTag",
    "es_prediction",
    "ner_result",
    "parse_iob_labels",
    "pass_through_result",
    "softmax",
    "text_classification_result",
    "text_embedding_result",
]

Result = dict[str, Any]
FloatArray = npt.NDArray[np.float64]


def es_prediction(output: npt.NDArray[Any]) -> FloatArray:
    """The 3-D float64 view Elasticsearch takes of a model output (raises NlpOutputError)."""
    if not np.issubdtype(output.dtype, np.floating):
        raise NlpOutputError(f"Cannot process result tensor of type [{output.dtype}]")
    if output.ndim == 2:
        return np.asarray(output, dtype=np.float64)[np.newaxis]
    if output.ndim == 3:
        return np.asarray(output, dtype=np.float64)
    dims = ", ".join(str(dim) for dim in output.shape)
    raise NlpOutputError(f"Cannot convert results tensor of size [{dims}]")


def softmax(values: FloatArray, axis: int = -1) -> FloatArray:
    shifted = np.exp(values - values.max(axis=axis, keepdims=True))
    result: FloatArray = shifted / shifted.sum(axis=axis, keepdims=True)
    return result


def _finish(result: Result, truncated: bool) -> Result:
    if truncated:
        result["is_truncated"] = True
    return result


def _first_row(prediction: FloatArray, task: str) -> FloatArray:
    if prediction.shape[0] < 1 or prediction.shape[1] < 1:
        raise NlpOutputError(f"{task} result has no data")
    row: FloatArray = prediction[0][0]
    return row


def text_embedding_result(prediction: FloatArray, results_field: str, truncated: bool) -> Result:
    return _finish({results_field: _first_row(prediction, "Text embedding").tolist()}, truncated)


def pass_through_result(prediction: FloatArray, results_field: str, truncated: bool) -> Result:
    if prediction.shape[0] < 1:
        raise NlpOutputError("Pass through result has no data")
    return _finish({results_field: prediction[0].tolist()}, truncated)


def text_classification_result(
    prediction: FloatArray,
    labels: Sequence[str],
    num_top_classes: int,
    results_field: str,
    truncated: bool,
) -> Result:
    """Top label, its probability and the ``num_top_classes`` best (negative = all)."""
    logits = _first_row(prediction, "Text classification")
    if len(logits) != len(labels):
        raise NlpOutputError(
            f"Expected exactly [{len(labels)}] values in text classification result; got [{len(logits)}]"
        )
    probabilities = softmax(logits)
    ranked = sorted(range(len(labels)), key=lambda index: -probabilities[index])
    limit = len(labels) if num_top_classes < 0 else num_top_classes
    top_classes = [
        {
            "class_name": labels[index],
            "class_probability": float(probabilities[index]),
            "class_score": float(probabilities[index]),
        }
        for index in ranked[:limit]
    ]
    result: Result = {results_field: labels[ranked[0]]}
    if top_classes:
        result["top_classes"] = top_classes
    result["prediction_probability"] = float(probabilities[ranked[0]])
    return _finish(result, truncated)


# ---------------------------------------------------------------------------------------------
# Named entity recognition
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IobTag:
    """An Inside-Outside-Beginning label: ``B-PER``/``B_PER``/``I-ORG``/``O`` (any case)."""

    tag: str
    entity: str

    @classmethod
    def parse(cls, label: str) -> IobTag:
        upper = label.upper()
        if upper[:2] in ("B-", "I-", "B_", "I_"):
            return cls(tag=label, entity=upper[2:])
        if upper == "O":
            return cls(tag=label, entity=upper)
        raise ValueError(f"classification label [{label}] is not an entity I-O-B tag.")

    @property
    def is_beginning(self) -> bool:
        return self.tag[:1] in ("b", "B")

    @property
    def is_none(self) -> bool:
        return self.tag in ("o", "O")


DEFAULT_IOB_TAGS: tuple[IobTag, ...] = tuple(
    IobTag.parse(label)
    for label in ("O", "B_MISC", "I_MISC", "B_PER", "I_PER", "B_ORG", "I_ORG", "B_LOC", "I_LOC")
)


def parse_iob_labels(labels: Sequence[str], error: type[ModelRuntimeError]) -> tuple[IobTag, ...]:
    """NER ``classification_labels`` as IOB tags (empty = Elasticsearch's default nine)."""
    if not labels:
        return DEFAULT_IOB_TAGS
    problems: list[str] = []
    seen: set[IobTag] = set()
    tags: list[IobTag] = []
    for label in labels:
        try:
            tag = IobTag.parse(label)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if tag in seen:
            problems.append(
                f"the classification label [{label}] is duplicated in the list {java_str(labels)}"
            )
        seen.add(tag)
        tags.append(tag)
    if problems:
        raise error("Validation Failed: " + "".join(f"{n}: {text};" for n, text in enumerate(problems, 1)))
    return tuple(tags)


@dataclass(frozen=True, slots=True)
class _Word:
    tag: IobTag
    score: float
    start: int  # code point offsets into the input text
    end: int


@dataclass(frozen=True, slots=True)
class _Entity:
    entity: str
    class_name: str
    probability: float
    start: int
    end: int


def _tag_words(
    scores: FloatArray,
    word_ids: Sequence[int | None],
    offsets: Sequence[tuple[int, int]],
    tags: Sequence[IobTag],
) -> list[_Word]:
    """One tag per input word: the best label of the mean of its sub-tokens' probabilities."""
    words: list[_Word] = []
    index, count = 0, len(word_ids)
    while index < count:
        word = word_ids[index]
        if word is None:  # special tokens map to no input word
            index += 1
            continue
        end = index
        while end + 1 < count and word_ids[end + 1] == word:
            end += 1
        mean = scores[index : end + 1].mean(axis=0)
        best = int(np.argmax(mean))
        words.append(_Word(tags[best], float(mean[best]), offsets[index][0], offsets[end][1]))
        index = end + 1
    return words


def _group_entities(words: Sequence[_Word], text: str, lower_case: bool) -> list[_Entity]:
    """Merge ``B_X I_X I_X`` runs into one entity whose probability is the words' mean."""
    entities: list[_Entity] = []
    index = 0
    while index < len(words):
        first = words[index]
        if first.tag.is_none:
            index += 1
            continue
        end = index + 1
        total = first.score
        while (
            end < len(words) and not words[end].tag.is_beginning and words[end].tag.entity == first.tag.entity
        ):
            total += words[end].score
            end += 1
        start_pos, end_pos = first.start, words[end - 1].end
        entity = text[start_pos:end_pos]
        entities.append(
            _Entity(
                entity=entity.lower() if lower_case else entity,
                class_name=first.tag.entity,
                probability=total / (end - index),
                start=start_pos,
                end=end_pos,
            )
        )
        index = end
    return entities


def _annotated_text(text: str, entities: Sequence[_Entity]) -> str:
    """``[Elastic](ORG&Elastic) is in [Mountain View](LOC&Mountain+View)``."""
    parts: list[str] = []
    position = 0
    for entity in entities:
        parts.append(text[position : entity.start])
        surface = text[entity.start : entity.end]
        parts.append(f"[{surface}]({entity.class_name}&{surface.replace(' ', '+')})")
        position = entity.end
    parts.append(text[position:])
    return "".join(parts)


_BEYOND_BMP = re.compile("[\U00010000-\U0010ffff]")


def _utf16_offsets(text: str) -> list[int] | None:
    """UTF-16 offset of every code point offset (None when they are equal, the usual case)."""
    if _BEYOND_BMP.search(text) is None:
        return None
    offsets = [0]
    for char in text:
        offsets.append(offsets[-1] + (2 if ord(char) > 0xFFFF else 1))
    return offsets


def ner_result(
    prediction: FloatArray,
    text: str,
    word_ids: Sequence[int | None],
    offsets: Sequence[tuple[int, int]],
    tags: Sequence[IobTag],
    results_field: str,
    truncated: bool,
    lower_case: bool,
) -> Result:
    """Annotated text and entities of one document (``word_ids``/``offsets`` per token)."""
    if prediction.shape[0] < 1:
        raise NlpOutputError("NER result has no data")
    scores = prediction[0]
    if scores.shape[0] < len(word_ids):
        raise NlpOutputError(
            f"Expected [{len(word_ids)}] token results in ner result; got [{scores.shape[0]}]"
        )
    if scores.shape[1] != len(tags):
        raise NlpOutputError(
            f"Expected exactly [{len(tags)}] values per token in ner result; got [{scores.shape[1]}]"
        )
    probabilities = softmax(scores[: len(word_ids)], axis=1)
    entities = _group_entities(_tag_words(probabilities, word_ids, offsets, tags), text, lower_case)
    utf16 = _utf16_offsets(text)
    result: Result = {
        results_field: _annotated_text(text, entities),
        "entities": [
            {
                "entity": entity.entity,
                "class_name": entity.class_name,
                "class_probability": entity.probability,
                "start_pos": entity.start if utf16 is None else utf16[entity.start],
                "end_pos": entity.end if utf16 is None else utf16[entity.end],
            }
            for entity in entities
        ],
    }
    return _finish(result, truncated)
