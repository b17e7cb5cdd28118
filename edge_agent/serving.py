"""The models this device serves, and atomic swaps between versions.

A new version is loaded with the worker's runtime (`modelfleet.runtime.backends.load_model`: ONNX
external data kept inside the model directory, TorchScript scanned before `torch.jit.load`, never
pickle) beside the old one, health-checked with a zero input, and only then put in the slot, one
assignment under a lock: requests see the old version or the new one, never neither. The old model
is not closed: requests still running on it finish, and it is freed when the last one lets go.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from modelfleet.runtime.backends import LoadedModel, load_model
from modelfleet.runtime.errors import ModelLoadError, ModelRuntimeError
from modelfleet.runtime.oip import datatype_to_numpy
from schemas.tensors import DataType, Signature


@dataclass(frozen=True)
class Served:
    service_id: str
    name: str
    model_id: str
    model: LoadedModel


class HealthCheckFailed(ModelLoadError):
    pass


def load_and_check(
    fmt: str, model_dir: Path, entry_file: str, signature: dict[str, Any] | None
) -> LoadedModel:
    """Load a verified model directory and health-check it (ModelLoadError on any failure)."""
    sig = Signature.model_validate(signature) if signature else None
    model = load_model(fmt, model_dir / entry_file, sig, threads=1)
    try:
        health_check(model)
    except BaseException:
        model.close()
        raise
    return model


def health_check(model: LoadedModel) -> None:
    """One inference on zeros (dynamic dimensions as 1): it must run and give finite numbers."""
    inputs: dict[str, npt.NDArray[Any]] = {}
    for spec in model.signature.inputs:
        shape = tuple(1 if d < 0 else d for d in spec.shape)
        if spec.datatype is DataType.BYTES:
            arr = np.empty(shape, dtype=object)
            arr.fill(b"")
            inputs[spec.name] = arr
        else:
            inputs[spec.name] = np.zeros(shape, dtype=datatype_to_numpy(spec.datatype))
    try:
        outputs = model.run(inputs)
    except ModelRuntimeError as e:
        raise HealthCheckFailed(f"health check failed: {e}") from e
    for name, value in outputs.items():
        arr = np.asarray(value)
        if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            raise HealthCheckFailed(f"health check failed: output {name!r} is not finite on a zero input")


class Slots:
    """name -> the model serving it. Lookups take no lock (a dict read is atomic)."""

    def __init__(self) -> None:
        self._by_name: dict[str, Served] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Served | None:
        return self._by_name.get(name)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def by_service(self) -> dict[str, Served]:
        return {s.service_id: s for s in list(self._by_name.values())}

    def swap(self, served: Served) -> Served | None:
        """Put `served` in its slot; returns what it replaced (left open for requests in flight)."""
        with self._lock:
            old = next((s for s in self._by_name.values() if s.service_id == served.service_id), None)
            new = dict(self._by_name)
            if old is not None and old.name != served.name:
                new.pop(old.name, None)
            new[served.name] = served
            self._by_name = new  # one reference assignment: readers see old or new
            return old

    def remove(self, service_id: str) -> None:
        with self._lock:
            self._by_name = {n: s for n, s in self._by_name.items() if s.service_id != service_id}

    def run(self, name: str, inputs: Mapping[str, npt.NDArray[Any]]) -> tuple[Served, dict[str, Any]] | None:
        served = self._by_name.get(name)
        if served is None:
            return None
        return served, served.model.run(inputs)
