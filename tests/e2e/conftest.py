from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelfleet.client import ApiError
from tests.e2e.platform import STARTED, RunningPlatform, start_platform
from tests.models import export_torch_onnx, export_torchscript, train_torch_digits


@dataclass
class DigitsModels:
    torch_model: Any
    x: np.ndarray
    y: np.ndarray
    onnx_path: Path
    torchscript_path: Path


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> DigitsModels:
    d = tmp_path_factory.mktemp("digits")
    model, x, y = train_torch_digits()
    export_torch_onnx(model, d / "digits.onnx")
    export_torchscript(model, d / "digits.pt")
    return DigitsModels(model, x, y, d / "digits.onnx", d / "digits.pt")


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    running = start_platform(tmp_path_factory.mktemp("platform"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def cleanup(platform: RunningPlatform) -> Iterator[list[str]]:
    """Deployment ids to stop and delete after the test, so tests don't eat each other's capacity."""
    ids: list[str] = []
    yield ids
    with platform.client() as c:
        for d in ids:
            with contextlib.suppress(ApiError):  # already deleted by the test
                c.delete(d, force=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed end-to-end test carries the tail of every platform log it touched."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when == "call":
        for p in STARTED:
            tail = "\n".join(p.log().splitlines()[-150:])
            report.sections.append((f"platform log {p.log_path.name}", tail))
