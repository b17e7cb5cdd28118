"""Errors raised by the model runtime.

::

    ModelRuntimeError                 # base class; also raised as-is for inference failures
    ├── ModelLoadError                # file missing, corrupt, unsupported format, unsafe external data;
    │                                 #   the message is the loader's own reason
    │   ├── NlpConfigError            # an NLP model's inference_config or vocabulary is unusable
    │   │   └── UnsupportedNlpTaskError   # a task type or tokenization we do not implement
    │   └── UnsafeArtifactError       # refused before loading: it could run code or escape its directory
    │       ├── ArchiveRefused        # an archive with traversal, links, bombs or oversized members
    │       └── UnsafePickleError     # a raw pickle, or a TorchScript archive with foreign globals/ops
    ├── RequestDecodeError            # malformed OIP request: bad JSON, bad binary framing,
    │   │                             #   data length mismatch, unknown datatype, too many elements
    │   └── NlpInputError             # a bad NLP request: missing/non-string input field, text too
    │                                 #   long with truncate none, invalid inference_config override
    ├── NlpOutputError                # an NLP model's output cannot become a task result
    └── SignatureMismatchError        # wrong input name, missing input, wrong shape or dtype;
                                      #   ``.details`` lists every problem

Every error carries a human-readable message (``str(err)`` / ``err.message``) that is safe to
return to the API caller.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ArchiveRefused",
    "ModelLoadError",
    "ModelRuntimeError",
    "NlpConfigError",
    "NlpInputError",
    "NlpOutputError",
    "RequestDecodeError",
    "SignatureMismatchError",
    "UnsafeArtifactError",
    "UnsafePickleError",
    "UnsupportedNlpTaskError",
]


class ModelRuntimeError(Exception):
    """Base class of every runtime error; carries a human message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ModelLoadError(ModelRuntimeError):
    """A model could not be loaded; the message is the loader's reason."""


class UnsafeArtifactError(ModelLoadError):
    """A model file refused before any loader touched it: loading it could run code or write
    outside the model directory. The message names the file, member or symbol at fault."""


class ArchiveRefused(UnsafeArtifactError):
    """An archive member escapes the destination, is a link or device, or breaks a size cap."""


class UnsafePickleError(UnsafeArtifactError):
    """A raw pickle, or a TorchScript archive whose pickles or code reach outside TorchScript."""


class RequestDecodeError(ModelRuntimeError):
    """An Open Inference Protocol request (or requested output list) is malformed."""


class NlpConfigError(ModelLoadError):
    """An NLP model cannot be served as configured (Elasticsearch-style message).

    Raised when the stored ``inference_config`` or the uploaded vocabulary is invalid; the model
    load fails with this reason, as Elasticsearch fails a deployment.
    """


class UnsupportedNlpTaskError(NlpConfigError):
    """The task type or tokenization is valid in Elasticsearch but not implemented here."""


class NlpInputError(RequestDecodeError):
    """A document or per-request ``inference_config`` override is invalid (HTTP 400 in ES)."""


class NlpOutputError(ModelRuntimeError):
    """The model's output does not fit the task (e.g. wrong number of classes; HTTP 500 in ES)."""


class SignatureMismatchError(ModelRuntimeError):
    """Request tensors do not match the model signature.

    ``details`` has one entry per problem, e.g.
    ``{"input": "x", "problem": "shape", "expected": "FP32[-1,64]", "given": "FP32[1,63]"}``.
    """

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.details: list[dict[str, Any]] = list(details) if details is not None else []
