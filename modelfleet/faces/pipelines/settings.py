"""The pipeline face's settings, read once from the environment at the edge."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


@dataclass(frozen=True)
class PipelineSettings:
    long_poll_seconds: float = 20.0  # how long a wait_for_completion request is held
    standby_after_seconds: float = 60.0  # an elastic deployment idle this long goes to stand-by
    token_lifetime_seconds: int = 3600  # access tokens of /auth/refresh (the client wants > 120 s)
    schedule_clock_rate: float = 1.0  # the local scheduler's clock speed (tests run it faster)
    workdir: Path = Path(tempfile.gettempdir()) / "modelfleet-pipelines"
    jwt_secret: str | None = None  # None: a per-platform secret kept in the artifacts bucket

    @classmethod
    def from_env(cls) -> PipelineSettings:
        stack = os.environ.get("MODELFLEET_STACK", "modelfleet")
        workdir = os.environ.get("MODELFLEET_PIPELINE_WORKDIR") or str(
            Path(tempfile.gettempdir()) / f"modelfleet-pipelines-{stack}-{os.getpid()}"
        )
        return cls(
            long_poll_seconds=_float("MODELFLEET_PIPELINE_LONG_POLL", 20.0),
            standby_after_seconds=_float("MODELFLEET_PIPELINE_STANDBY_AFTER", 60.0),
            token_lifetime_seconds=int(_float("MODELFLEET_PIPELINE_TOKEN_TTL", 3600)),
            schedule_clock_rate=_float("MODELFLEET_PIPELINE_CLOCK_RATE", 1.0),
            workdir=Path(workdir),
            jwt_secret=os.environ.get("MODELFLEET_PIPELINE_JWT_SECRET") or None,
        )
