"""Cold-start figures: how long until a digits deployment answers.

Three rows, one function each, all returning a `Timing`:

- `native_deploy_to_started`: `POST /api/v1/deployments` -> state `started`.
- `ml_start_to_started`: the Elasticsearch face,
  `POST /_ml/trained_models/{id}/deployment/_start?wait_for=started`, with the official client.
- `scale_from_zero_to_first_prediction`: a deployment with adaptive allocations scaled to zero,
  then the time from the first `_infer` to its answer.

The `_ml` face, like Elasticsearch, only feeds tokenizer outputs to a model, so its rows use the
digits MLP behind a token input (`bench.models.digits_for_ml`: same weights, same size). While
`/_ml/...` answers the gateway's own 404 (`route_not_found`), those rows print "pending (not
landed)"; a step the face refuses prints "error" with its message.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from bench.models import ML_VOCABULARY
from bench.platform import deploy_and_wait, remove
from modelfleet.client import Client
from modelfleet.faces.elastic.upload import upload_trained_model
from modelfleet.local.launcher import wait_for

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

ML_MODEL_ID = "bench-digits-ml"


@dataclass(frozen=True)
class Timing:
    """Seconds, or why there is no figure (`status` is "measured", "pending" or "error")."""

    status: str
    seconds: float | None = None
    note: str = ""

    @classmethod
    def measured(cls, seconds: float, note: str = "") -> Timing:
        return cls("measured", seconds, note)

    @classmethod
    def pending(cls, note: str) -> Timing:
        return cls("pending", None, note)

    @classmethod
    def error(cls, note: str) -> Timing:
        return cls("error", None, note[:500])


@dataclass(frozen=True)
class ColdStartContext:
    url: str
    key: str  # "id:secret"
    client: Client
    digits_model_id: str  # registered through the native API
    digits_for_ml: Path  # the same MLP behind a token input (see bench.models.digits_for_ml)


def route_landed(url: str, key: str, path: str) -> bool:
    """False while the gateway answers `path` with its own unknown-route 404."""
    r = httpx.get(f"{url}{path}", headers={"authorization": f"Bearer {key}"}, timeout=30)
    if r.status_code != 404:
        return True
    try:
        return bool(r.json().get("code") != "route_not_found")
    except ValueError:
        return True


def native_deploy_to_started(ctx: ColdStartContext, runs: int = 3) -> Timing:
    """Median of `runs` deploy -> started of digits (1 allocation), each deleted afterwards."""
    samples = []
    for i in range(runs):
        deployment = f"digits-cold-{i}"
        samples.append(deploy_and_wait(ctx.client, deployment, model_id=ctx.digits_model_id, allocations=1))
        remove(ctx.client, deployment)
    return _median(samples)


@contextlib.contextmanager
def _es_with_digits(ctx: ColdStartContext, model_id: str) -> Iterator[Elasticsearch]:
    """The official client, with digits put as a trained model the way Elasticsearch clients put
    one: a config (`pass_through`), the definition in base64 parts, and a vocabulary (required
    before a start). The model is stopped and deleted afterwards."""
    from elasticsearch import ApiError, Elasticsearch

    key_id, secret = ctx.key.split(":", 1)
    es = Elasticsearch(ctx.url, api_key=(key_id, secret), request_timeout=120)
    try:
        upload_trained_model(es, model_id, ctx.digits_for_ml, {"pass_through": {}}, ML_VOCABULARY)
        yield es
    finally:
        with contextlib.suppress(ApiError):
            es.ml.stop_trained_model_deployment(model_id=model_id, force=True)
        with contextlib.suppress(ApiError):
            es.ml.delete_trained_model(model_id=model_id, force=True)
        es.close()


def ml_start_to_started(ctx: ColdStartContext, runs: int = 3) -> Timing:
    """`POST /_ml/trained_models/{id}/deployment/_start?wait_for=started` for digits, with the
    official `elasticsearch` client: the median of `runs` (a fresh trained model each). Only the
    `_start` call is timed."""
    if not route_landed(ctx.url, ctx.key, "/_ml/trained_models"):
        return Timing.pending("pending (not landed)")
    from elasticsearch import ApiError

    samples = []
    try:
        for i in range(runs):
            model_id = f"{ML_MODEL_ID}-{i}"
            with _es_with_digits(ctx, model_id) as es:
                t0 = time.perf_counter()
                es.ml.start_trained_model_deployment(
                    model_id=model_id, number_of_allocations=1, threads_per_allocation=1, wait_for="started"
                )
                samples.append(time.perf_counter() - t0)
    except ApiError as e:
        return Timing.error(f"the _ml face refused a step: {e}")
    return _median(samples)


def _median(samples: list[float]) -> Timing:
    ordered = sorted(samples)
    return Timing.measured(
        ordered[len(ordered) // 2], f"median of {len(ordered)}: " + ", ".join(f"{s:.2f}" for s in ordered)
    )


def _allocations(es: Elasticsearch, model_id: str) -> tuple[int, int]:
    """(target number_of_allocations, allocations on nodes) from the stats API."""
    stats = es.ml.get_trained_models_stats(model_id=model_id)["trained_model_stats"][0]["deployment_stats"]
    return int(stats["number_of_allocations"]), int(stats["allocation_status"]["allocation_count"])


def scale_from_zero_to_first_prediction(ctx: ColdStartContext, runs: int = 3) -> Timing:
    """From the first request to a deployment at zero allocations to its answer (median of `runs`).

    `runs` copies of digits are started through `_ml` with adaptive allocations (min 0); the
    bench's platform scales idle ones to zero after SCALE_TO_ZERO_AFTER_S. Once none has an
    allocation left, one `_infer` per copy is timed, one after the other: the face starts an
    allocation and the request waits for it.
    """
    if not route_landed(ctx.url, ctx.key, "/_ml/trained_models"):
        return Timing.pending("pending (not landed)")
    from elasticsearch import ApiError

    model_ids = [f"{ML_MODEL_ID}-zero-{i}" for i in range(runs)]
    try:
        with contextlib.ExitStack() as stack:
            es = None
            for model_id in model_ids:
                es = stack.enter_context(_es_with_digits(ctx, model_id))
                es.ml.start_trained_model_deployment(
                    model_id=model_id,
                    wait_for="started",
                    adaptive_allocations={
                        "enabled": True,
                        "min_number_of_allocations": 0,
                        "max_number_of_allocations": 1,
                    },
                )
            assert es is not None
            try:
                wait_for(
                    "zero allocations",
                    lambda: all(_allocations(es, m) == (0, 0) for m in model_ids),
                    timeout=30,
                )
            except TimeoutError:
                return Timing.pending("pending (the deployment did not scale to zero within 30 s)")
            samples = []
            for model_id in model_ids:
                t0 = time.perf_counter()
                result = es.ml.infer_trained_model(
                    model_id=model_id, docs=[{"text_field": "digit"}], timeout="30s"
                )
                samples.append(time.perf_counter() - t0)
                if not result["inference_results"]:
                    return Timing.error("the first _infer answered no result")
            return _median(samples)
    except ApiError as e:
        return Timing.error(f"the _ml face refused a step: {e}")
