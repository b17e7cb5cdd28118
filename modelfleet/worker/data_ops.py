"""The ops of the node's data port. `infer`: an OIP v2 body for one deployment version.

More ops plug in with `registry.register(name, handler)`; a handler decodes its own fields and
body and answers through the Responder (see data_server.py), e.g. from an allocation thread via
`LoadedDeployment.submit(..., done=...)`.
"""

from __future__ import annotations

import logging
import math
import time

from modelfleet.gateway.node_link import NOT_SERVING_FIELD, Frame, encode_fields
from modelfleet.worker.agent import NodeAgent
from modelfleet.worker.batcher import DeploymentUnloaded, Outcome, QueueFull
from modelfleet.worker.data_server import Handler, OpRegistry, Responder
from modelfleet.worker.inference import NOT_LOADED, Reply, outcome_reply, prepare, refusal

_JSON = encode_fields({"content-type": "application/json"})
_NOT_SERVING = encode_fields({"content-type": "application/json", "retry-after": "1", NOT_SERVING_FIELD: "1"})
log = logging.getLogger(__name__)


def send_reply(respond: Responder, reply: Reply) -> None:
    """An inference Reply as a response frame."""
    if (
        reply.json_header_length is None
        and reply.retry_after is None
        and reply.content_type == "application/json"
    ):
        respond(reply.status, _JSON, reply.body)
        return
    fields = {"content-type": reply.content_type}
    if reply.json_header_length is not None:
        fields["inference-header-content-length"] = str(reply.json_header_length)
    if reply.retry_after is not None:
        fields["retry-after"] = reply.retry_after
    respond(reply.status, fields, reply.body)


def deadline_of(frame: Frame) -> float:
    """The request's deadline on `time.monotonic()`, from its `timeout_ms` field."""
    timeout = frame.fields.get("timeout_ms")
    if not timeout:
        return math.inf
    try:
        return time.monotonic() + int(timeout) / 1000.0
    except ValueError:
        return math.inf


def infer_op(agent: NodeAgent, max_tensor_elements: int) -> Handler:
    def infer(frame: Frame, respond: Responder) -> None:
        fields = frame.fields
        version = fields.get("version", "")
        loaded = agent.serving(fields.get("uid", ""), version)
        if loaded is None:
            respond(NOT_LOADED.status, _NOT_SERVING, NOT_LOADED.body)
            return
        call = prepare(loaded, frame.body, fields.get("inference-header-content-length"), max_tensor_elements)
        if isinstance(call, Reply):
            send_reply(respond, call)
            return

        def done(outcome: Outcome) -> None:
            reply = outcome_reply(loaded, version, call, outcome)
            if reply.status >= 500:  # the gateway's correlation id ties this line to its request
                cid = fields.get("x-correlation-id", "")
                log.warning(
                    "inference failed with %d correlation_id=%s",
                    reply.status,
                    cid,
                    extra={"correlation_id": cid},
                )
            send_reply(respond, reply)

        deadline = deadline_of(frame)
        outcome = loaded.run_inline(call.inputs, deadline)  # an idle, fast deployment: no hand-off
        if outcome is not None:
            done(outcome)
            return
        try:
            loaded.submit(call.inputs, done, deadline)
        except (QueueFull, DeploymentUnloaded) as e:
            send_reply(respond, refusal(e))

    return infer


def default_ops(agent: NodeAgent, max_tensor_elements: int) -> OpRegistry:
    registry = OpRegistry()
    registry.register("infer", infer_op(agent, max_tensor_elements))
    return registry
