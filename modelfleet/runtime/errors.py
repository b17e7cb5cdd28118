"""Errors raised by the model runtime.

::

    ModelRuntimeError                 # base class; also raised as-is for inference failures
    ├── ModelLoadError                # file missing, corrupt, unsupported format, unsafe external data;
    │                                 #   the message is the loader's own reason
    ├── RequestDecodeError            # malformed OIP request: bad JSON, bad binary framing,
    │                                 #   data length mismatch, unknown datatype, too many elements
    └── SignatureMismatchError        # wrong input name, missing input, wrong shape or dtype;
                                      #   ``.details`` lists every problem

Every error carries a human-readable message (``str(err)`` / ``err.message``) that is safe to
return to the API caller.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ModelLoadError",
    "ModelRuntimeError",
    "RequestDecodeError",
    "SignatureMismatchError",
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


class RequestDecodeError(ModelRuntimeError):
    """An Open Inference Protocol request (or requested output list) is malformed."""


class SignatureMismatchError(ModelRuntimeError):
    """Request tensors do not match the model signature.

    ``details`` has one entry per problem, e.g.
    ``{"input": "x", "problem": "shape", "expected": "FP32[-1,64]", "given": "FP32[1,63]"}``.
    """

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.details: list[dict[str, Any]] = list(details) if details is not None else []
