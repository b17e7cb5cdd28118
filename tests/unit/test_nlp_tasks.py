"""NLP tasks: inference_config parsing and overrides, documents and inputs, tiny real models."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from modelfleet.runtime.backends import LoadedModel, load_model
from modelfleet.runtime.errors import NlpConfigError, NlpInputError, UnsupportedNlpTaskError
from modelfleet.runtime.nlp import TextTask, apply_override, extract_input, nlp_signature, parse_task
from modelfleet.runtime.nlp.results import DEFAULT_IOB_TAGS, parse_iob_labels
from schemas.nodes import NlpTask
from schemas.tensors import DataType, Signature, TensorSpec
from tests.nlp_models import CLASS_LABELS, NER_LABELS, TINY_VOCABULARY, torch_logits
from tests.unit.conftest import TinyNlpModels

VOCABULARY = {"vocabulary": TINY_VOCABULARY}
NER_TEXT = "Jane Doe works at Elasticsearch in Mountain View, California."


def spec(task_type: str, **config: Any) -> NlpTask:
    return NlpTask(task_type=task_type, task_config=config)


def int_signature(*names: str, datatype: DataType = DataType.INT64) -> Signature:
    return Signature(
        inputs=[TensorSpec(name=name, datatype=datatype, shape=[-1, -1]) for name in names],
        outputs=[TensorSpec(name="logits", datatype=DataType.FP32, shape=[-1, -1])],
    )


# -- inference_config ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "task_type",
    ["fill_mask", "question_answering", "zero_shot_classification", "text_similarity", "text_expansion"],
)
def test_other_elasticsearch_tasks_are_unsupported_and_the_supported_ones_are_named(task_type: str) -> None:
    with pytest.raises(UnsupportedNlpTaskError) as caught:
        parse_task(task_type, {})
    assert str(caught.value) == (
        f"task type [{task_type}] is not supported; supported task types are "
        "[pass_through, text_embedding, text_classification, ner]"
    )


@pytest.mark.parametrize(
    ("task_type", "config", "message"),
    [
        ("summarize", {}, "unknown task type [summarize]; supported task types are [pass_through,"),
        (
            "text_classification",
            {},
            "[text_classification] requires at least 2 [classification_labels]; provided null",
        ),
        (
            "text_classification",
            {"classification_labels": ["a"]},
            "[text_classification] requires at least 2 [classification_labels]; provided [a]",
        ),
        ("text_embedding", {"num_top_classes": 2}, "[text_embedding] unknown field [num_top_classes]"),
        ("ner", {"classification_labels": "O"}, "[classification_labels] must be a list of strings; got [O]"),
        ("pass_through", {"results_field": ""}, "[results_field] must be a non-empty string"),
        ("ner", {"tokenization": {"roberta": {}}}, "tokenization [roberta] is not supported"),
    ],
)
def test_invalid_stored_configs_are_refused(task_type: str, config: dict[str, Any], message: str) -> None:
    with pytest.raises(NlpConfigError) as caught:
        parse_task(task_type, config)
    assert str(caught.value).startswith(message)


def test_ner_labels_must_be_iob_tags_without_duplicates() -> None:
    with pytest.raises(NlpConfigError) as caught:
        parse_task("ner", {"classification_labels": ["O", "B-PER", "PERSON", "B-PER"]})
    assert str(caught.value) == (
        "Validation Failed: 1: classification label [PERSON] is not an entity I-O-B tag.;"
        "2: the classification label [B-PER] is duplicated in the list [O, B-PER, PERSON, B-PER];"
    )


def test_ner_labels_accept_dashes_underscores_and_any_case() -> None:
    tags = parse_iob_labels(["o", "b-per", "I_PER", "B_misc"], NlpConfigError)
    assert [(t.entity, t.is_beginning, t.is_none) for t in tags] == [
        ("O", False, True),
        ("PER", True, False),
        ("PER", False, False),
        ("MISC", True, False),
    ]
    assert parse_task("ner", {}).iob_tags == DEFAULT_IOB_TAGS
    assert [t.tag for t in DEFAULT_IOB_TAGS] == [
        "O", "B_MISC", "I_MISC", "B_PER", "I_PER", "B_ORG", "I_ORG", "B_LOC", "I_LOC",
    ]  # fmt: skip


def test_stored_config_defaults() -> None:
    settings = parse_task(
        "text_classification", {"classification_labels": ["a", "b"], "vocabulary": {"index": "x"}}
    )
    assert settings.results_field == "predicted_value"
    assert settings.num_top_classes == -1  # Elasticsearch's default: every class
    assert settings.tokenization.max_sequence_length == 512


def test_override_honours_what_elasticsearch_allows() -> None:
    base = parse_task("text_classification", {"classification_labels": ["a", "b", "c"]})
    updated = apply_override(
        base,
        {
            "text_classification": {
                "num_top_classes": 1,
                "classification_labels": ["x", "y", "z"],
                "results_field": "label",
                "tokenization": {"bert": {"truncate": "none"}},
            }
        },
    )
    assert (updated.num_top_classes, updated.classification_labels, updated.results_field) == (
        1,
        ("x", "y", "z"),
        "label",
    )
    assert updated.tokenization.truncate == "none"
    assert apply_override(base, None) is base and apply_override(base, {}) is base


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"ner": {}},
            "Inference config of type [text_classification] can not be updated with a request of type [ner]",
        ),
        (
            {"fill_mask": {}},
            "Inference config of type [text_classification] can not be updated with a request of type "
            "[fill_mask]",
        ),
        ({"regression_x": {}}, "unknown inference config type [regression_x]"),
        (
            {"text_classification": {}, "ner": {}},
            "[inference_config] must be an object with exactly one task type",
        ),
        ({"text_classification": {"top_k": 3}}, "[text_classification] unknown field [top_k]"),
        ({"text_classification": {"num_top_classes": "2"}}, "[num_top_classes] must be an integer; got [2]"),
        (
            {"text_classification": {"classification_labels": ["x"]}},
            "The number of [classification_labels] the model is defined with [3] does not match the number "
            "in the update [1]",
        ),
        (
            {"text_classification": {"tokenization": {"bert": {"max_sequence_length": 8}}}},
            "[bert_tokenization_update] unknown field [max_sequence_length]",
        ),
    ],
)
def test_invalid_overrides_are_input_errors(override: dict[str, Any], message: str) -> None:
    base = parse_task("text_classification", {"classification_labels": ["a", "b", "c"]})
    with pytest.raises(NlpInputError) as caught:
        apply_override(base, override)
    assert str(caught.value) == message


def test_ner_override_cannot_change_labels() -> None:
    with pytest.raises(NlpInputError, match=r"^\[ner\] unknown field \[classification_labels\]$"):
        apply_override(parse_task("ner", {}), {"ner": {"classification_labels": ["O"]}})


# -- documents and inputs --------------------------------------------------------------------


def test_input_field_lookup_follows_elasticsearch() -> None:
    assert extract_input({"text_field": "hi"}, "text_field") == "hi"
    assert extract_input({"body": {"text": "nested"}}, "body.text") == "nested"
    assert extract_input({"body.text": "flat"}, "body.text") == "flat"
    with pytest.raises(NlpInputError) as missing:
        extract_input({"other": "x"}, "text_field")
    assert str(missing.value) == "Input field [text_field] does not exist in the source document"
    with pytest.raises(NlpInputError) as not_text:
        extract_input({"text_field": 5}, "text_field")
    assert str(not_text.value) == "Input value [5] for field [text_field] must be a string"
    with pytest.raises(
        NlpInputError, match=r"^Input value \[\[a, true\]\] for field \[t\] must be a string$"
    ):
        extract_input({"t": ["a", True]}, "t")


def test_torchscript_signature_lists_elasticsearch_inputs_in_order() -> None:
    bert = nlp_signature(spec("text_embedding"), "torchscript")
    assert [(s.name, s.datatype, s.shape) for s in bert.inputs] == [
        (name, DataType.INT64, [-1, -1])
        for name in ("input_ids", "attention_mask", "token_type_ids", "position_ids")
    ]
    mpnet = nlp_signature(spec("ner", tokenization={"mpnet": {}}), "torchscript")
    assert [s.name for s in mpnet.inputs] == ["input_ids", "attention_mask"]
    assert [s.shape for s in mpnet.outputs] == [[-1, -1, -1]]
    with pytest.raises(ValueError, match="read from the model file"):
        nlp_signature(spec("text_embedding"), "onnx")
    with pytest.raises(UnsupportedNlpTaskError):
        nlp_signature(spec("fill_mask"), "torchscript")


def test_only_the_inputs_the_model_declares_are_fed_with_its_integer_type() -> None:
    task = TextTask(
        spec("text_embedding"),
        VOCABULARY,
        int_signature("input_ids", "position_ids", datatype=DataType.INT32),
    )
    (doc,) = task.encode([{"text_field": "jane doe"}])
    assert sorted(doc.inputs) == ["input_ids", "position_ids"]
    assert doc.inputs["input_ids"].dtype == np.int32
    assert doc.inputs["input_ids"].tolist() == [[2, 5, 6, 3]]
    assert doc.inputs["position_ids"].tolist() == [[0, 1, 2, 3]]
    full = TextTask(spec("text_embedding"), VOCABULARY, nlp_signature(spec("text_embedding"), "torchscript"))
    (doc,) = full.encode([{"text_field": "jane doe"}])
    assert doc.inputs["attention_mask"].tolist() == [[1, 1, 1, 1]]
    assert doc.inputs["token_type_ids"].tolist() == [[0, 0, 0, 0]]


@pytest.mark.parametrize(
    ("signature", "vocabulary", "message"),
    [
        (int_signature("input_ids", "pixel_values"), VOCABULARY, "model input [pixel_values] is not one of"),
        (
            int_signature("input_ids", datatype=DataType.FP32),
            VOCABULARY,
            "model input [input_ids] must be INT64",
        ),
        (int_signature("input_ids"), {"vocabulary": []}, "[vocabulary] must be a non-empty list of strings"),
        (int_signature("input_ids"), {"merges": []}, "[vocabulary] must be a non-empty list of strings"),
    ],
)
def test_unusable_model_or_vocabulary_fails_the_load(
    signature: Signature, vocabulary: dict[str, Any], message: str
) -> None:
    with pytest.raises(NlpConfigError) as caught:
        TextTask(spec("text_embedding"), vocabulary, signature)
    assert str(caught.value).startswith(message)


def test_cache_key_covers_exactly_what_the_result_depends_on() -> None:
    labels = {"classification_labels": ["a", "b"]}
    classify = TextTask(spec("text_classification", **labels), VOCABULARY, int_signature("input_ids"))

    def key(task: TextTask, text: str, override: dict[str, Any] | None = None) -> bytes:
        return task.encode([{"text_field": text}], override)[0].cache_key

    assert key(classify, "Jane doe") == key(classify, "Jane doe")
    assert key(classify, "Jane doe") != key(classify, "jane")
    assert key(classify, "Jane doe") != key(
        classify, "Jane doe", {"text_classification": {"num_top_classes": 1}}
    )
    lowered = spec("text_classification", **labels, tokenization={"bert": {"do_lower_case": True}})
    lower_task = TextTask(lowered, VOCABULARY, int_signature("input_ids"))
    assert key(lower_task, "Jane Doe") == key(lower_task, "jane doe")  # same ids, same classification
    ner = TextTask(
        spec("ner", tokenization={"bert": {"do_lower_case": True}}), VOCABULARY, int_signature("input_ids")
    )
    assert key(ner, "Jane Doe") != key(ner, "jane doe")  # entity text and offsets come from the text
    other_model = TextTask(lowered, VOCABULARY, int_signature("input_ids"), cache_namespace=b"model-2")
    assert key(other_model, "Jane Doe") != key(lower_task, "Jane Doe")


def test_a_bad_document_or_override_fails_the_encode() -> None:
    task = TextTask(spec("text_embedding"), VOCABULARY, int_signature("input_ids"))
    with pytest.raises(NlpInputError, match="does not exist in the source document"):
        task.encode([{"text_field": "ok"}, {"title": "no text"}])
    with pytest.raises(NlpInputError, match="can not be updated"):
        task.encode([{"text_field": "ok"}], {"ner": {}})
    long_text = {"text_field": "jane " * 20}
    tight = TextTask(
        spec("text_embedding", tokenization={"bert": {"max_sequence_length": 8}}),
        VOCABULARY,
        int_signature("input_ids"),
    )
    assert tight.encode([long_text])[0].truncated
    with pytest.raises(NlpInputError, match=r"^Input too large. The tokenized input length \[22\]"):
        tight.encode([long_text], {"text_embedding": {"tokenization": {"bert": {"truncate": "none"}}}})


# -- tiny real models, TorchScript and ONNX -------------------------------------------------


def _load(models: TinyNlpModels, name: str, task: NlpTask) -> tuple[LoadedModel, TextTask]:
    fmt = "torchscript" if name.endswith(".pt") else "onnx"
    signature = nlp_signature(task, fmt) if fmt == "torchscript" else None
    loaded = load_model(fmt, models.files[name], signature, threads=1)
    return loaded, TextTask(task, VOCABULARY, loaded.signature)


def _infer(
    loaded: LoadedModel, task: TextTask, text: str, override: dict[str, Any] | None = None
) -> dict[str, Any]:
    (doc,) = task.encode([{"text_field": text}], override)
    return task.decode(doc, loaded.run(doc.inputs))


@pytest.mark.parametrize("name", ["ner.pt", "ner.onnx"])
def test_ner_on_a_tiny_bert(tiny_nlp_models: TinyNlpModels, name: str) -> None:
    ner = spec("ner", classification_labels=NER_LABELS, tokenization={"bert": {"do_lower_case": True}})
    loaded, task = _load(tiny_nlp_models, name, ner)
    assert len(loaded.signature.inputs) == (4 if name.endswith(".pt") else 2)
    result = _infer(loaded, task, NER_TEXT)
    assert result["predicted_value"] == (
        "[Jane Doe](PER&Jane+Doe) works at [Elasticsearch](ORG&Elasticsearch) in "
        "[Mountain View](LOC&Mountain+View), [California](LOC&California)."
    )
    assert [(e["entity"], e["class_name"], e["start_pos"], e["end_pos"]) for e in result["entities"]] == [
        ("jane doe", "PER", 0, 8),
        ("elasticsearch", "ORG", 18, 31),
        ("mountain view", "LOC", 35, 48),
        ("california", "LOC", 50, 60),
    ]
    assert all(0.9 < e["class_probability"] < 1.0 for e in result["entities"])
    renamed = _infer(loaded, task, NER_TEXT, {"ner": {"results_field": "annotated"}})
    assert renamed["annotated"] == result["predicted_value"] and "predicted_value" not in renamed


@pytest.mark.parametrize("name", ["classifier.pt", "classifier.onnx"])
def test_text_classification_on_a_tiny_bert(tiny_nlp_models: TinyNlpModels, name: str) -> None:
    loaded, task = _load(
        tiny_nlp_models, name, spec("text_classification", classification_labels=CLASS_LABELS)
    )
    for text in ("the film was great!", "terrible film", "ok"):
        (doc,) = task.encode([{"text_field": text}])
        reference = torch_logits(tiny_nlp_models.classifier, doc.tokens.ids.tolist()).softmax(-1)[0].tolist()
        result = task.decode(doc, loaded.run(doc.inputs))
        best = max(range(3), key=lambda i: reference[i])
        assert result["predicted_value"] == CLASS_LABELS[best]
        assert result["prediction_probability"] == pytest.approx(reference[best], abs=1e-5)
        assert {c["class_name"]: c["class_probability"] for c in result["top_classes"]} == {
            label: pytest.approx(p, abs=1e-5) for label, p in zip(CLASS_LABELS, reference, strict=True)
        }
    top_one = _infer(loaded, task, "ok", {"text_classification": {"num_top_classes": 1}})
    assert len(top_one["top_classes"]) == 1
    assert top_one["top_classes"][0]["class_name"] == top_one["predicted_value"]


def _summary(result: dict[str, Any]) -> list[tuple[Any, ...]]:
    """A result as comparable rows, probabilities rounded (padding changes the last digits)."""
    if "entities" in result:
        rows = [
            (e["entity"], e["class_name"], e["start_pos"], e["end_pos"], round(e["class_probability"], 4))
            for e in result["entities"]
        ]
        return [(result["predicted_value"],), *rows]
    return [(result["predicted_value"], round(result["prediction_probability"], 4))] + [
        (c["class_name"], round(c["class_probability"], 4)) for c in result["top_classes"]
    ]


@pytest.mark.parametrize(
    ("name", "task_spec"),
    [
        ("classifier.onnx", spec("text_classification", classification_labels=CLASS_LABELS)),
        ("classifier.pt", spec("text_classification", classification_labels=CLASS_LABELS)),
        (
            "ner.pt",
            spec("ner", classification_labels=NER_LABELS, tokenization={"bert": {"do_lower_case": True}}),
        ),
    ],
)
def test_batched_documents_give_the_per_document_results(
    tiny_nlp_models: TinyNlpModels, name: str, task_spec: NlpTask
) -> None:
    loaded, task = _load(tiny_nlp_models, name, task_spec)
    docs = task.encode([{"text_field": t} for t in ("ok", NER_TEXT, "the film was terrible !")])
    batch = task.stack_inputs(docs)
    assert batch["input_ids"].shape == (3, max(doc.length for doc in docs))
    assert batch["input_ids"][0, docs[0].length :].tolist() == [0] * (
        batch["input_ids"].shape[1] - docs[0].length
    )
    outputs = task.split_outputs(loaded.run(batch), docs)
    batched = [task.decode(doc, out) for doc, out in zip(docs, outputs, strict=True)]
    single = [task.decode(doc, loaded.run(doc.inputs)) for doc in docs]
    assert [_summary(r) for r in batched] == [_summary(r) for r in single]
