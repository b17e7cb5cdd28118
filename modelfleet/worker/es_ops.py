"""The node's Elasticsearch op: `es_infer` (text documents → task results). The cache clear is an
HTTP call from the control plane (`POST /_cache/{uid}/_clear`, worker/server.py).

`es_infer` tokenizes each document with the deployment's `TextTask`, answers the ones already in
the node's inference cache at once (a hit costs microseconds and is counted), and queues the
others on the deployment's allocations like any inference, so the queue bound (429), deadlines
(408) and batching apply alike. The allocation thread that finishes the last document answers.
Errors use Elasticsearch's envelope, since the gateway relays them unchanged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from modelfleet.gateway.node_link import NOT_SERVING_FIELD, Frame
from modelfleet.runtime.cache import json_size
from modelfleet.runtime.errors import ModelRuntimeError, NlpInputError, RequestDecodeError
from modelfleet.runtime.nlp import EncodedDoc
from modelfleet.worker.agent import NodeAgent
from modelfleet.worker.batcher import DeploymentUnloaded, InferenceTimeout, Outcome, QueueFull
from modelfleet.worker.data_ops import deadline_of
from modelfleet.worker.data_server import Handler, Responder
from modelfleet.worker.loaded import LoadedDeployment
from modelfleet.worker.text import TextServing

PRODUCT_JSON = {"content-type": "application/json", "x-elastic-product": "Elasticsearch"}


def es_reply(
    respond: Responder,
    status: int,
    type_: str,
    reason: str,
    retry_after: str | None = None,
    not_serving: bool = False,
) -> None:
    cause = {"type": type_, "reason": reason}
    fields = dict(PRODUCT_JSON)
    if retry_after:
        fields["retry-after"] = retry_after
    if not_serving:
        fields[NOT_SERVING_FIELD] = "1"
    respond(status, fields, orjson.dumps({"error": {"root_cause": [cause], **cause}, "status": status}))


def _failure(respond: Responder, error: BaseException, deployment_id: str) -> None:
    if isinstance(error, QueueFull):
        es_reply(
            respond,
            429,
            "es_rejected_execution_exception",
            f"inference process queue is full. Unable to execute command: {error}",
            retry_after="1",
        )
    elif isinstance(error, InferenceTimeout):
        es_reply(
            respond,
            408,
            "elasticsearch_status_exception",
            f"timeout [{error}] waiting for inference result of deployment [{deployment_id}]",
        )
    elif isinstance(error, DeploymentUnloaded):
        es_reply(respond, 409, "status_exception", f"deployment [{deployment_id}] is stopping on this node")
    elif isinstance(error, RequestDecodeError):
        es_reply(respond, 400, "status_exception", str(error))
    else:
        es_reply(respond, 500, "status_exception", f"inference failed: {str(error)[:2000]}")


class _Gather:
    """Collects the documents of one request; the last one to finish answers."""

    def __init__(self, respond: Responder, loaded: LoadedDeployment, text: TextServing, n: int) -> None:
        self.respond = respond
        self.loaded = loaded
        self.text = text
        self.results: list[dict[str, Any] | None] = [None] * n
        self.error: BaseException | None = None
        self.left = 0
        self.lock = threading.Lock()

    def expect(self, count: int) -> None:
        self.left = count

    def callback(self, i: int, doc: EncodedDoc) -> Callable[[Outcome], None]:
        return lambda outcome: self.done(i, doc, outcome)

    def done(self, i: int, doc: EncodedDoc, outcome: Outcome) -> None:
        result: dict[str, Any] | None = None
        error: BaseException | None = None
        if isinstance(outcome, BaseException):
            error = outcome
        else:
            try:
                result = self.text.task.decode(doc, outcome)
                self.text.cache.put(doc.cache_key, result, json_size(result))
            except ModelRuntimeError as e:
                error = e
        with self.lock:
            if error is not None and self.error is None:
                self.error = error
            self.results[i] = result
            self.left -= 1
            last = self.left == 0
        if last:
            self.finish()

    def finish(self) -> None:
        if self.error is not None:
            _failure(self.respond, self.error, self.loaded.assignment.deployment_id)
            return
        self.respond(200, PRODUCT_JSON, orjson.dumps({"inference_results": self.results}))


def _parse(body: bytes) -> tuple[list[Mapping[str, Any]], Mapping[str, Any] | None]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise NlpInputError(f"Failed to parse the request body as JSON: {e}") from None
    if not isinstance(data, dict):
        raise NlpInputError("the request body must be a JSON object with [docs]")
    unknown = sorted(set(data) - {"docs", "inference_config"})
    if unknown:
        raise NlpInputError(f"[infer_trained_model] unknown field [{unknown[0]}]")
    docs = data.get("docs")
    if not isinstance(docs, list) or not docs or not all(isinstance(d, dict) for d in docs):
        raise NlpInputError("[docs] must be a non-empty array of objects")
    override = data.get("inference_config")
    if override is not None and not isinstance(override, dict):
        raise NlpInputError("[inference_config] must be an object")
    return docs, override


def es_infer_op(agent: NodeAgent) -> Handler:
    def es_infer(frame: Frame, respond: Responder) -> None:
        fields = frame.fields
        loaded = agent.serving(fields.get("uid", ""), fields.get("version", ""))
        if loaded is None:
            reason = "this node does not serve that deployment (yet)"
            es_reply(respond, 503, "status_exception", reason, "1", not_serving=True)
            return
        text = loaded.text
        if text is None:
            es_reply(respond, 400, "status_exception", "this deployment does not run a text (NLP) task")
            return
        loaded.stats.record_access()
        started = time.perf_counter()
        try:
            docs, override = _parse(bytes(frame.body))
            settings = text.task.effective_settings(override)
            encoded = [text.task.encode_doc(doc, settings) for doc in docs]
        except RequestDecodeError as e:
            loaded.stats.record_error()
            es_reply(respond, 400, "status_exception", str(e))
            return
        gather = _Gather(respond, loaded, text, len(encoded))
        misses = []
        for i, doc in enumerate(encoded):
            cached = text.cache.get(doc.cache_key)
            if cached is None:
                misses.append(i)
            else:
                gather.results[i] = cached
                loaded.stats.record_cache_hit((time.perf_counter() - started) * 1000.0)
        if not misses:
            gather.finish()
            return
        gather.expect(len(misses))
        deadline = deadline_of(frame)
        for n, i in enumerate(misses):
            doc = encoded[i]
            try:
                loaded.submit(doc.inputs, gather.callback(i, doc), deadline)
            except (QueueFull, DeploymentUnloaded) as e:
                # Those not queued are answered now, as failed; the queued ones still finish.
                for j in misses[n:]:
                    gather.done(j, encoded[j], e)
                return

    return es_infer
