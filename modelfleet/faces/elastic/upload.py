"""Client side of a trained-model upload, as eland does it: the config, the definition in base64
parts, then the vocabulary, through the official `elasticsearch` client (any object with its `ml`
methods)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

PART_BYTES = 1024 * 1024  # raw bytes per part (base64 makes it ~1.4 MB on the wire)


def upload_trained_model(
    es: Any,
    model_id: str,
    path: Path,
    inference_config: dict[str, Any],
    vocabulary: list[str],
    model_type: str = "onnx",
    field_names: tuple[str, ...] = ("text_field",),
    part_bytes: int = PART_BYTES,
    description: str = "",
) -> None:
    es.ml.put_trained_model(
        model_id=model_id,
        model_type=model_type,
        inference_config=inference_config,
        input={"field_names": list(field_names)},
        description=description,
    )
    data = path.read_bytes()
    parts = [data[i : i + part_bytes] for i in range(0, len(data), part_bytes)]
    for n, chunk in enumerate(parts):
        es.ml.put_trained_model_definition_part(
            model_id=model_id,
            part=n,
            definition=base64.b64encode(chunk).decode(),
            total_definition_length=len(data),
            total_parts=len(parts),
        )
    es.ml.put_trained_model_vocabulary(model_id=model_id, vocabulary=vocabulary)
