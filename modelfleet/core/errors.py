"""Errors of the pure core.

CoreError
├── InvalidTransition     a lifecycle change its transition table does not allow
└── ValidationFailed      a request the core refuses (bad value, conflicting fields)
"""

from __future__ import annotations


class CoreError(Exception):
    """Base of every error the pure core raises."""


class InvalidTransition(CoreError):
    def __init__(self, kind: str, current: str, target: str) -> None:
        super().__init__(f"{kind} cannot go from '{current}' to '{target}'")
        self.kind = kind
        self.current = current
        self.target = target


class ValidationFailed(CoreError):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
