"""One row's outcome, and the context every row gets."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelfleet.local.launcher import LocalPlatform


@dataclass
class RowResult:
    sent: int = 0
    acknowledged: int = 0  # answered (any status) or otherwise accounted for
    ok: int = 0  # answered as the fault's contract says it must be
    lost: int = 0  # never answered, or acknowledged and then gone
    duplicated: int = 0  # done twice where once was promised
    errors_5xx: int = 0
    leaks: int = 0  # another project's data seen
    notes: str = ""

    @property
    def clean(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.errors_5xx == 0 and self.leaks == 0

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "clean": self.clean}


@dataclass
class Context:
    platform: LocalPlatform
    workdir: Path
    short: bool  # the CI form: fewer requests, same checks
    digits_model_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def scaled(self, full: int, short: int) -> int:
        return short if self.short else full
