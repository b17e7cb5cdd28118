"""The raw floor: `InferenceSession.run` in this process, no HTTP, no JSON.

No server can answer faster than this; the table shows how much each server adds on top.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort


def session(path: Path, threads: int | None = None) -> ort.InferenceSession:
    """A CPU session; `threads=None` keeps onnxruntime's defaults (what the peer server uses)."""
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def run_p50_ms(
    path: Path,
    inputs: dict[str, npt.NDArray[Any]],
    threads: int | None = None,
    seconds: float = 1.5,
    warmup: int = 20,
) -> float:
    """Median wall time of one `session.run` over about `seconds` of back-to-back calls."""
    sess = session(path, threads)
    for _ in range(warmup):
        sess.run(None, inputs)
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 20:
        t = time.perf_counter()
        sess.run(None, inputs)
        samples.append(time.perf_counter() - t)
    return float(np.median(samples)) * 1e3


def batched(inputs: dict[str, npt.NDArray[Any]], rows: int) -> dict[str, npt.NDArray[Any]]:
    """The one-row inputs stacked `rows` times along the batch axis."""
    return {name: np.repeat(a, rows, axis=0) for name, a in inputs.items()}
