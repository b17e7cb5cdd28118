"""The client's error format: `{"message", "name", "request_id", "additional_data"}` (it raises
`SdkException(message, status_code, name, request_id, additional_data)` from it)."""

from __future__ import annotations

from typing import Any


def error_body(
    message: str, name: str, request_id: str = "", additional_data: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "message": message,
        "name": name,
        "request_id": request_id,
        "additional_data": additional_data or {},
    }
