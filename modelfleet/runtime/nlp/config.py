"""An NLP model's ``inference_config`` and the per-request overrides Elasticsearch allows.

A model stores one task entry, e.g. ``{"text_classification": {"classification_labels": [...],
"num_top_classes": 2, "tokenization": {"bert": {...}}}}``; ``parse_task`` turns the entry into
``TaskSettings`` with Elasticsearch's defaults filled in. An ``_infer`` request may override
some of it for that request only (``apply_override``), exactly where Elasticsearch allows:

* every task: ``results_field`` and ``tokenization`` (``truncate``/``span`` only);
* ``text_classification`` also ``num_top_classes`` and ``classification_labels`` (same count).

The override must name the model's own task type, else Elasticsearch's "can not be updated"
error. Stored configs raise NlpConfigError (the deployment fails to load); overrides raise
NlpInputError (the request is refused).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from modelfleet.runtime.errors import (
    ModelRuntimeError,
    NlpConfigError,
    NlpInputError,
    UnsupportedNlpTaskError,
)
from modelfleet.runtime.nlp.es_text import java_str
from modelfleet.runtime.nlp.results import IobTag, parse_iob_labels
from modelfleet.runtime.nlp.tokenization import (
    TokenizationSettings,
    apply_tokenization_update,
    parse_tokenization,
)

__all__ = [
    "DEFAULT_RESULTS_FIELD",
    "ES_TASK_TYPES",
    "SUPPORTED_TASKS",
    "TaskSettings",
    "TaskType",
    "apply_override",
    "parse_task",
    "parse_task_type",
]

DEFAULT_RESULTS_FIELD = "predicted_value"


class TaskType(StrEnum):
    PASS_THROUGH = "pass_through"
    TEXT_EMBEDDING = "text_embedding"
    TEXT_CLASSIFICATION = "text_classification"
    NER = "ner"


# Every NLP task Elasticsearch knows, to tell "unsupported here" from "no such task".
ES_TASK_TYPES = (
    "fill_mask",
    "ner",
    "pass_through",
    "question_answering",
    "text_classification",
    "text_embedding",
    "text_expansion",
    "text_similarity",
    "zero_shot_classification",
)
SUPPORTED_TASKS: tuple[str, ...] = tuple(task.value for task in TaskType)
_SUPPORTED_LIST = ", ".join(SUPPORTED_TASKS)

_COMMON_FIELDS = ("tokenization", "results_field", "vocabulary")
_STORED_FIELDS: dict[TaskType, tuple[str, ...]] = {
    TaskType.PASS_THROUGH: _COMMON_FIELDS,
    TaskType.TEXT_EMBEDDING: (*_COMMON_FIELDS, "embedding_size"),
    TaskType.TEXT_CLASSIFICATION: (*_COMMON_FIELDS, "classification_labels", "num_top_classes"),
    TaskType.NER: (*_COMMON_FIELDS, "classification_labels"),
}
_UPDATE_FIELDS: dict[TaskType, tuple[str, ...]] = {
    TaskType.PASS_THROUGH: ("tokenization", "results_field"),
    TaskType.TEXT_EMBEDDING: ("tokenization", "results_field"),
    TaskType.TEXT_CLASSIFICATION: (
        "tokenization",
        "results_field",
        "classification_labels",
        "num_top_classes",
    ),
    TaskType.NER: ("tokenization", "results_field"),
}


@dataclass(frozen=True)
class TaskSettings:
    """Everything that decides how a text becomes a result (hashable: part of the cache key)."""

    task_type: TaskType
    tokenization: TokenizationSettings = field(default_factory=TokenizationSettings)
    results_field: str = DEFAULT_RESULTS_FIELD
    classification_labels: tuple[str, ...] = ()
    num_top_classes: int = -1  # text_classification: negative = every class (Elasticsearch's default)
    iob_tags: tuple[IobTag, ...] = ()  # ner only


def parse_task_type(task_type: str) -> TaskType:
    """The supported task type named ``task_type`` (UnsupportedNlpTaskError / NlpConfigError)."""
    try:
        return TaskType(task_type)
    except ValueError:
        pass
    if task_type in ES_TASK_TYPES:
        raise UnsupportedNlpTaskError(
            f"task type [{task_type}] is not supported; supported task types are [{_SUPPORTED_LIST}]"
        )
    raise NlpConfigError(f"unknown task type [{task_type}]; supported task types are [{_SUPPORTED_LIST}]")


def _check_fields(
    config: Mapping[str, object], allowed: Sequence[str], parser: str, error: type[ModelRuntimeError]
) -> None:
    for name in config:
        if name not in allowed:
            raise error(f"[{parser}] unknown field [{name}]")


def _string(config: Mapping[str, object], name: str, error: type[ModelRuntimeError]) -> str | None:
    value = config.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise error(f"[{name}] must be a non-empty string; got [{java_str(value)}]")
    return value


def _labels(config: Mapping[str, object], error: type[ModelRuntimeError]) -> tuple[str, ...] | None:
    value = config.get("classification_labels")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(label, str) for label in value):
        raise error(f"[classification_labels] must be a list of strings; got [{java_str(value)}]")
    return tuple(value)


def _num_top_classes(config: Mapping[str, object], error: type[ModelRuntimeError]) -> int | None:
    value = config.get("num_top_classes")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise error(f"[num_top_classes] must be an integer; got [{java_str(value)}]")
    return value


def parse_task(task_type: str, config: Mapping[str, object] | None) -> TaskSettings:
    """The model's settings from its task type and ``inference_config`` entry (NlpConfigError)."""
    task = parse_task_type(task_type)
    config = {} if config is None else config
    if not isinstance(config, Mapping):
        raise NlpConfigError(f"[{task.value}] must be an object")
    _check_fields(config, _STORED_FIELDS[task], task.value, NlpConfigError)
    settings = TaskSettings(
        task_type=task,
        tokenization=parse_tokenization(config.get("tokenization")),
        results_field=_string(config, "results_field", NlpConfigError) or DEFAULT_RESULTS_FIELD,
    )
    labels = _labels(config, NlpConfigError)
    if task is TaskType.TEXT_CLASSIFICATION:
        if labels is None or len(labels) < 2:
            raise NlpConfigError(
                "[text_classification] requires at least 2 [classification_labels]; "
                f"provided {java_str(labels)}"
            )
        top = _num_top_classes(config, NlpConfigError)
        settings = replace(settings, classification_labels=labels, num_top_classes=-1 if top is None else top)
    elif task is TaskType.NER:
        labels = labels or ()
        settings = replace(
            settings, classification_labels=labels, iob_tags=parse_iob_labels(labels, NlpConfigError)
        )
    return settings


def apply_override(settings: TaskSettings, override: Mapping[str, object] | None) -> TaskSettings:
    """``settings`` updated by a request's ``inference_config`` (None or {} = no change).

    Raises NlpInputError with Elasticsearch's message for a task mismatch, an unknown or
    malformed field, or a label list of the wrong length.
    """
    if not override:
        return settings
    if not isinstance(override, Mapping) or len(override) != 1:
        raise NlpInputError("[inference_config] must be an object with exactly one task type")
    ((name, body),) = override.items()
    if name != settings.task_type.value:
        if name not in ES_TASK_TYPES:
            raise NlpInputError(f"unknown inference config type [{name}]")
        raise NlpInputError(
            f"Inference config of type [{settings.task_type.value}] can not be updated with a request of "
            f"type [{name}]"
        )
    if body is None:
        return settings
    if not isinstance(body, Mapping):
        raise NlpInputError(f"[{name}] must be an object")
    _check_fields(body, _UPDATE_FIELDS[settings.task_type], name, NlpInputError)
    updated = settings
    results_field = _string(body, "results_field", NlpInputError)
    if results_field is not None:
        updated = replace(updated, results_field=results_field)
    if body.get("tokenization") is not None:
        updated = replace(
            updated, tokenization=apply_tokenization_update(settings.tokenization, body["tokenization"])
        )
    if settings.task_type is TaskType.TEXT_CLASSIFICATION:
        top = _num_top_classes(body, NlpInputError)
        if top is not None:
            updated = replace(updated, num_top_classes=top)
        labels = _labels(body, NlpInputError)
        if labels is not None:
            if len(labels) != len(settings.classification_labels):
                raise NlpInputError(
                    "The number of [classification_labels] the model is defined with "
                    f"[{len(settings.classification_labels)}] does not match the number in the update "
                    f"[{len(labels)}]"
                )
            updated = replace(updated, classification_labels=labels)
    return updated
