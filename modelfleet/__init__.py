"""modelfleet: deploy ONNX and TorchScript models as endpoints.

`modelfleet.Client` is the typed SDK (`modelfleet/sdk/`); it is imported on first use, so node
processes and handlers that import `modelfleet.*` do not pay for httpx and numpy set-up here."""

from __future__ import annotations

from typing import Any

__all__ = ["Client"]


def __getattr__(name: str) -> Any:
    if name == "Client":
        from modelfleet.sdk.client import Client

        return Client
    raise AttributeError(f"module 'modelfleet' has no attribute {name!r}")
