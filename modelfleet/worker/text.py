"""What a loaded NLP deployment adds on a node: its text task (tokenizer from the uploaded
vocabulary, Elasticsearch result shapes) and its inference cache, bounded by `cache_size` bytes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from modelfleet.runtime.cache import InferenceCache
from modelfleet.runtime.nlp import TextTask
from schemas.nodes import Assignment

if TYPE_CHECKING:
    from modelfleet.worker.loaded import LoadedDeployment


class TextServing:
    """What a loaded NLP deployment adds: its task (tokenizer + result shaping) and its cache."""

    def __init__(self, task: TextTask, cache_bytes: int) -> None:
        self.task = task
        self.cache: InferenceCache[dict[str, Any]] = InferenceCache(cache_bytes)

    @classmethod
    def build(cls, assignment: Assignment, loaded: LoadedDeployment, model_dir: Path) -> TextServing | None:
        if assignment.nlp is None:
            return None
        vocabulary = orjson.loads((model_dir / assignment.nlp.vocabulary_file).read_bytes())
        task = TextTask(assignment.nlp, vocabulary, loaded.signature)
        return cls(task, assignment.cache_size_bytes)
