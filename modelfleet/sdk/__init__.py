"""The typed Python SDK of modelfleet: `Client` and its exception tree."""

from modelfleet.sdk.client import Client, InferResult
from modelfleet.sdk.errors import (
    ApiError,
    BadRequest,
    Conflict,
    ConnectionFailed,
    DeploymentFailed,
    Forbidden,
    ModelfleetError,
    NotFound,
    PayloadTooLarge,
    ServerError,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    WaiterError,
    WaitTimeout,
)

__all__ = [
    "ApiError",
    "BadRequest",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "DeploymentFailed",
    "Forbidden",
    "InferResult",
    "ModelfleetError",
    "NotFound",
    "PayloadTooLarge",
    "ServerError",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "WaitTimeout",
    "WaiterError",
]
