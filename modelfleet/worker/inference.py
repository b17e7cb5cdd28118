"""One OIP inference request on a node, whichever way it arrived (HTTP or a gateway frame):
decode and check it, and turn its outcome (outputs or an error) into a reply.

Errors are the `/v2` JSON format `{"error": message, "code": code}`, with the status codes the
gateway passes on: 400 bad request, 429 queue full, 503 not (or no longer) loaded, 504 deadline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy.typing as npt
import orjson

from modelfleet.runtime.errors import ModelRuntimeError, RequestDecodeError, SignatureMismatchError
from modelfleet.runtime.oip import InferRequest, decode_infer_request, encode_infer_response
from modelfleet.runtime.validation import check_inputs
from modelfleet.worker.batcher import DeploymentUnloaded, InferenceTimeout, Outcome, QueueFull
from modelfleet.worker.loaded import LoadedDeployment

JSON = "application/json"
BINARY = "application/octet-stream"


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = JSON
    json_header_length: int | None = None  # Inference-Header-Content-Length of a binary body
    retry_after: str | None = None


def error_reply(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    retry_after: str | None = None,
) -> Reply:
    body: dict[str, Any] = {"error": message, "code": code}
    if details:
        body["details"] = details
    return Reply(status, orjson.dumps(body), retry_after=retry_after)


NOT_LOADED = error_reply(503, "not_loaded", "this node does not serve that deployment (yet)", retry_after="1")


@dataclass(slots=True)
class Call:
    """A decoded request whose inputs match the model's signature."""

    request: InferRequest
    inputs: dict[str, npt.NDArray[Any]]


def prepare(
    loaded: LoadedDeployment,
    body: bytes | bytearray | memoryview,
    json_header_length: str | None,
    max_elements: int,
) -> Call | Reply:
    """Decode `body` and check it against the signature; a Reply is a 400 to send back."""
    try:
        header_len = int(json_header_length) if json_header_length is not None else None
    except ValueError:
        loaded.stats.record_error()
        return error_reply(400, "invalid_request", "Inference-Header-Content-Length must be an integer")
    try:
        request = decode_infer_request(body, header_len, max_elements=max_elements)
        return Call(request, check_inputs(loaded.signature, request.inputs))
    except SignatureMismatchError as e:
        loaded.stats.record_error()
        return error_reply(400, "signature_mismatch", str(e), e.details)
    except RequestDecodeError as e:
        loaded.stats.record_error()
        return error_reply(400, "invalid_request", str(e))


def refusal(error: QueueFull | DeploymentUnloaded) -> Reply:
    """The reply to a request the deployment would not queue (submit raised)."""
    if isinstance(error, QueueFull):
        return error_reply(429, "queue_full", str(error), retry_after="1")
    return NOT_LOADED


def outcome_reply(loaded: LoadedDeployment, version: str, call: Call, outcome: Outcome) -> Reply:
    """The reply to a request that ran (or was refused in the queue)."""
    if isinstance(outcome, BaseException):
        if isinstance(outcome, InferenceTimeout):
            return error_reply(504, "inference_timeout", str(outcome))
        if isinstance(outcome, DeploymentUnloaded):
            return NOT_LOADED
        text = str(outcome)  # the runtime refused the input (e.g. a value the graph rejects)
        status = 400 if "INVALID_ARGUMENT" in text or "Invalid" in text else 500
        return error_reply(status, "inference_failed", text[:2000])
    try:
        payload, json_len = encode_infer_response(
            loaded.assignment.deployment_id,
            version,
            call.request.id,
            outcome,
            call.request.outputs,
            call.request.binary_outputs_default,
        )
    except RequestDecodeError as e:
        return error_reply(400, "invalid_request", str(e))
    except ModelRuntimeError as e:  # an output without an OIP datatype
        return error_reply(500, "inference_failed", str(e))
    if json_len is None:
        return Reply(200, payload)
    return Reply(200, payload, BINARY, json_len)
