"""Which text task a model runs, read from the trained-model config the `_ml` face stored."""

from __future__ import annotations

from typing import Any

from schemas.models import ModelRecord
from schemas.nodes import NlpTask

VOCABULARY_FILE = "vocabulary.json"


def nlp_task(model: ModelRecord) -> NlpTask | None:
    """The model's NLP task, or None for a plain tensor model."""
    config: dict[str, Any] = model.face.get("inference_config") or {}
    if not config:
        return None
    task_type, task_config = next(iter(config.items()))
    field_names = (model.face.get("input") or {}).get("field_names") or ["text_field"]
    return NlpTask(
        task_type=task_type,
        task_config=dict(task_config or {}),
        field_names=list(field_names),
        vocabulary_file=VOCABULARY_FILE,
    )
