"""Model outputs to Elasticsearch results, on hand-made outputs (every rule checked exactly)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from modelfleet.runtime.errors import NlpConfigError, NlpOutputError
from modelfleet.runtime.nlp.results import (
    IobTag,
    es_prediction,
    ner_result,
    parse_iob_labels,
    pass_through_result,
    text_classification_result,
    text_embedding_result,
)


def test_outputs_become_elasticsearch_3d_arrays() -> None:
    assert es_prediction(np.zeros((1, 4), np.float32)).shape == (1, 1, 4)
    assert es_prediction(np.zeros((1, 3, 4), np.float32)).shape == (1, 3, 4)
    with pytest.raises(NlpOutputError, match=r"^Cannot convert results tensor of size \[1, 2, 3, 4\]$"):
        es_prediction(np.zeros((1, 2, 3, 4), np.float32))
    with pytest.raises(NlpOutputError, match=r"^Cannot process result tensor of type \[int64\]$"):
        es_prediction(np.zeros((1, 4), np.int64))


def test_embedding_and_pass_through_results() -> None:
    two_d = es_prediction(np.array([[0.5, -1.0]], np.float32))
    three_d = es_prediction(np.array([[[1.0, 2.0], [3.0, 4.0]]], np.float32))
    assert text_embedding_result(two_d, "predicted_value", False) == {"predicted_value": [0.5, -1.0]}
    assert text_embedding_result(three_d, "vec", True) == {"vec": [1.0, 2.0], "is_truncated": True}
    assert pass_through_result(two_d, "predicted_value", False) == {"predicted_value": [[0.5, -1.0]]}
    assert pass_through_result(three_d, "raw", False) == {"raw": [[1.0, 2.0], [3.0, 4.0]]}


def test_classification_ranks_softmax_probabilities() -> None:
    logits = es_prediction(np.array([[1.0, 3.0, 2.0]], np.float32))
    exp = [math.exp(v) for v in (1.0, 3.0, 2.0)]
    p = [v / sum(exp) for v in exp]
    result = text_classification_result(logits, ["a", "b", "c"], 2, "predicted_value", False)
    assert list(result) == ["predicted_value", "top_classes", "prediction_probability"]
    assert result["predicted_value"] == "b"
    assert result["prediction_probability"] == pytest.approx(p[1])
    assert result["top_classes"] == [
        {"class_name": "b", "class_probability": pytest.approx(p[1]), "class_score": pytest.approx(p[1])},
        {"class_name": "c", "class_probability": pytest.approx(p[2]), "class_score": pytest.approx(p[2])},
    ]
    every = text_classification_result(logits, ["a", "b", "c"], -1, "predicted_value", True)
    assert [c["class_name"] for c in every["top_classes"]] == ["b", "c", "a"] and every[
        "is_truncated"
    ] is True
    none = text_classification_result(logits, ["a", "b", "c"], 0, "label", False)
    assert none == {"label": "b", "prediction_probability": pytest.approx(p[1])}
    ties = text_classification_result(
        es_prediction(np.zeros((1, 3), np.float32)), ["x", "y", "z"], -1, "v", False
    )
    assert [c["class_name"] for c in ties["top_classes"]] == ["x", "y", "z"]  # stable, as Java's sort
    with pytest.raises(
        NlpOutputError, match=r"Expected exactly \[2\] values in text classification result; got \[3\]"
    ):
        text_classification_result(logits, ["a", "b"], 0, "v", False)


def _ner(
    text: str,
    word_ids: list[int | None],
    offsets: list[tuple[int, int]],
    token_tags: list[list[float]],
    **kw: Any,
) -> dict[str, Any]:
    tags = parse_iob_labels(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], NlpConfigError)
    logits = np.log(np.array([token_tags], dtype=np.float64))  # softmax(log p) == p
    return ner_result(
        logits,
        text,
        word_ids,
        offsets,
        tags,
        kw.get("field", "predicted_value"),
        False,
        kw.get("lower", False),
    )


O_, BP, IP, BL, IL = ([1.0 if i == k else 1e-12 for i in range(5)] for k in range(5))


def test_ner_merges_iob_runs_and_annotates_the_text() -> None:
    text = "Ana Lima met Bo in New York"
    words = [(0, 3), (4, 8), (9, 12), (13, 15), (16, 18), (19, 22), (23, 27)]
    result = _ner(
        text,
        [None, 0, 1, 2, 3, 4, 5, 6, None],
        [(0, 0), *words, (0, 0)],
        [O_, BP, IP, O_, BP, O_, BL, IL, O_],
        lower=True,
    )
    assert (
        result["predicted_value"] == "[Ana Lima](PER&Ana+Lima) met [Bo](PER&Bo) in [New York](LOC&New+York)"
    )
    assert [(e["entity"], e["class_name"], e["start_pos"], e["end_pos"]) for e in result["entities"]] == [
        ("ana lima", "PER", 0, 8),
        ("bo", "PER", 13, 15),
        ("new york", "LOC", 19, 27),
    ]
    assert list(result["entities"][0]) == [
        "entity",
        "class_name",
        "class_probability",
        "start_pos",
        "end_pos",
    ]


def test_ner_b_tag_starts_a_new_entity_and_i_without_b_starts_one_too() -> None:
    text = "a b c d"
    words = [(0, 1), (2, 3), (4, 5), (6, 7)]
    result = _ner(text, [0, 1, 2, 3], words, [IP, BP, BP, IL])
    assert [(e["entity"], e["class_name"]) for e in result["entities"]] == [
        ("a", "PER"),
        ("b", "PER"),
        ("c", "PER"),
        ("d", "LOC"),
    ]


def test_ner_averages_sub_word_probabilities_and_entity_scores() -> None:
    text = "Elasticsearch rocks"
    # word 0 is two tokens: B-LOC 0.9 then B-LOC 0.5 / O 0.5 -> mean B-LOC 0.7; word 1 is I-LOC 0.6
    token_tags = [
        [0.1 / 4] * 3 + [0.9] + [0.1 / 4],
        [0.5, 1e-12, 1e-12, 0.5, 1e-12],
        [0.1, 0.1, 0.1, 0.1, 0.6],
    ]
    result = _ner(text, [0, 0, 1], [(0, 7), (7, 13), (14, 19)], token_tags)
    (entity,) = result["entities"]
    assert (entity["entity"], entity["start_pos"], entity["end_pos"]) == ("Elasticsearch rocks", 0, 19)
    assert entity["class_probability"] == pytest.approx((0.7 + 0.6) / 2, abs=1e-9)


def test_ner_positions_count_utf16_units_like_java() -> None:
    text = "😀 Ana"  # the emoji is 1 code point but 2 UTF-16 units
    result = _ner(text, [None, 0, 1, None], [(0, 0), (0, 1), (2, 5), (0, 0)], [O_, O_, BP, O_])
    assert result["entities"][0] | {"class_probability": 1} == {
        "entity": "Ana", "class_name": "PER", "class_probability": 1, "start_pos": 3, "end_pos": 6,
    }  # fmt: skip
    assert result["predicted_value"] == "😀 [Ana](PER&Ana)"


def test_ner_without_entities_returns_the_text() -> None:
    assert _ner("hi", [0], [(0, 2)], [O_]) == {"predicted_value": "hi", "entities": []}


def test_ner_output_of_the_wrong_width_is_an_output_error() -> None:
    tags = (IobTag.parse("O"), IobTag.parse("B-PER"))
    with pytest.raises(
        NlpOutputError, match=r"Expected exactly \[2\] values per token in ner result; got \[3\]"
    ):
        ner_result(np.zeros((1, 1, 3)), "a", [0], [(0, 1)], tags, "v", False, False)
