"""The Elasticsearch face, driven by the official `elasticsearch` client (9.x) against the running
local platform: models in parts, vocabulary, start/update/stop with parameters, `_infer`, stats,
cache, and every validation rule with Elasticsearch's status and message."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from elasticsearch import ApiError, BadRequestError, ConflictError, Elasticsearch, NotFoundError

from modelfleet.faces.elastic.upload import upload_trained_model
from tests.e2e.platform import ADMIN_KEY, RunningPlatform, wait_for

pytestmark = pytest.mark.e2e

KEY_ID, KEY_SECRET = ADMIN_KEY.split(":", 1)


@pytest.fixture
def es(platform: RunningPlatform) -> Iterator[Elasticsearch]:
    client = Elasticsearch(platform.url, api_key=(KEY_ID, KEY_SECRET), request_timeout=60)
    created: list[str] = []
    client.created = created  # type: ignore[attr-defined]
    yield client
    for model_id in created:
        # only "already gone" is fine: a failed forced delete would leave a deployment holding
        # processors that later tests expect to be free
        with contextlib.suppress(NotFoundError):
            client.ml.delete_trained_model(model_id=model_id, force=True)
    client.close()


def upload(
    es: Elasticsearch,
    model_id: str,
    path: Path,
    config: dict[str, Any],
    vocab: list[str],
    model_type: str = "onnx",
) -> None:
    es.created.append(model_id)  # type: ignore[attr-defined]
    upload_trained_model(
        es, model_id, path, config, vocab, model_type=model_type, description="uploaded by the e2e test"
    )


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def node_stats_total(es: Elasticsearch, model_id: str, field: str) -> int:
    stats = es.ml.get_trained_models_stats(model_id=model_id)["trained_model_stats"]
    return int(sum(s.get("deployment_stats", {}).get(field, 0) for s in stats))


def allocation_count(es: Elasticsearch, model_id: str) -> int:
    stats = es.ml.get_trained_models_stats(model_id=model_id)["trained_model_stats"][0]
    return int(stats["deployment_stats"]["allocation_status"]["allocation_count"])


def test_minilm_full_flow_with_the_official_client(es: Elasticsearch, minilm: Any) -> None:
    config = minilm.inference_config
    upload(es, "minilm", minilm.model_path, config, minilm.vocabulary)
    got = es.ml.get_trained_models(model_id="minilm")
    assert got["count"] == 1
    cfg = got["trained_model_configs"][0]
    assert cfg["model_type"] == "onnx" and cfg["fully_defined"] is True
    assert cfg["inference_config"] == config

    started = es.ml.start_trained_model_deployment(
        model_id="minilm",
        number_of_allocations=1,
        threads_per_allocation=1,
        queue_capacity=64,
        cache_size="10mb",
        wait_for="started",
        timeout="60s",
    )
    assignment = started["assignment"]
    assert assignment["assignment_state"] == "started"
    params = assignment["task_parameters"]
    assert params["number_of_allocations"] == 1 and params["threads_per_allocation"] == 1
    assert params["queue_capacity"] == 64 and params["cache_size"] == f"{10 * 1024 * 1024}b"
    assert params["model_bytes"] == minilm.model_path.stat().st_size
    assert {"per_deployment_memory_bytes", "per_allocation_memory_bytes", "priority"} <= set(params)
    route = next(iter(assignment["routing_table"].values()))
    assert route["routing_state"] == "started" and route["current_allocations"] == 1
    assert "start_time" in assignment and assignment["max_assigned_allocations"] >= 1

    sentences = ["A cat sits on the mat.", "Stocks FELL sharply on Monday!", "Café déjà vu, naïve résumé."]
    result = es.ml.infer_trained_model(model_id="minilm", docs=[{"text_field": s} for s in sentences])
    vectors = [np.array(r["predicted_value"]) for r in result["inference_results"]]
    expected = minilm.reference_embeddings(sentences)
    for got_vec, want in zip(vectors, expected, strict=True):
        assert got_vec.shape == (384,)
        assert cosine(got_vec, want) >= 0.999

    updated = es.ml.update_trained_model_deployment(model_id="minilm", number_of_allocations=2)
    assert updated["assignment"]["task_parameters"]["number_of_allocations"] == 2
    wait_for("2 allocations started", lambda: allocation_count(es, "minilm") >= 2 or None, timeout=30)
    wait_for("inference counted", lambda: node_stats_total(es, "minilm", "inference_count") >= 3 or None)
    stats = es.ml.get_trained_models_stats(model_id="minilm")["trained_model_stats"][0]["deployment_stats"]
    for field in (
        "inference_count",
        "average_inference_time_ms",
        "average_inference_time_ms_excluding_cache_hits",
        "inference_cache_hit_count",
        "number_of_pending_requests",
        "rejected_execution_count",
        "timeout_count",
        "error_count",
        "peak_throughput_per_minute",
    ):
        assert field in stats, field
    node = stats["nodes"][0]
    assert {"throughput_last_minute", "routing_state", "number_of_allocations"} <= set(node)

    assert es.ml.stop_trained_model_deployment(model_id="minilm")["stopped"] is True
    assert es.ml.delete_trained_model(model_id="minilm")["acknowledged"] is True
    with pytest.raises(NotFoundError):
        es.ml.get_trained_models(model_id="minilm")


def test_cache_hits_are_counted_and_cleared(es: Elasticsearch, tiny_bert: Any) -> None:
    upload(es, "tiny-cache", tiny_bert.classifier_onnx, tiny_bert.classifier_config, tiny_bert.vocabulary)
    es.ml.start_trained_model_deployment(model_id="tiny-cache", cache_size="1mb", wait_for="started")
    doc = [{"text_field": "the same words again"}]
    first = es.ml.infer_trained_model(model_id="tiny-cache", docs=doc)
    second = es.ml.infer_trained_model(model_id="tiny-cache", docs=doc)
    assert first["inference_results"] == second["inference_results"]
    wait_for(
        "cache hit counted",
        lambda: node_stats_total(es, "tiny-cache", "inference_cache_hit_count") >= 1 or None,
    )
    es.perform_request(
        "POST",
        "/_ml/trained_models/tiny-cache/deployment/cache/_clear",
        headers={"accept": "application/json"},
    )
    es.ml.infer_trained_model(model_id="tiny-cache", docs=doc)
    wait_for(
        "third inference counted", lambda: node_stats_total(es, "tiny-cache", "inference_count") >= 3 or None
    )
    assert node_stats_total(es, "tiny-cache", "inference_cache_hit_count") == 1


def test_queue_full_answers_429_and_counts_rejections(
    es: Elasticsearch, minilm: Any, platform: RunningPlatform
) -> None:
    upload(es, "minilm-q", minilm.model_path, minilm.inference_config, minilm.vocabulary)
    # A second deployment of one model, by deployment_id, with a queue of one request.
    es.ml.start_trained_model_deployment(
        model_id="minilm-q",
        deployment_id="minilm-queue",
        queue_capacity=1,
        cache_size="0b",
        wait_for="started",
    )
    auth = base64.b64encode(ADMIN_KEY.encode()).decode()
    long_text = "a rather long sentence that keeps the encoder busy for a while " * 12

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=platform.url, timeout=60) as c:
            return await asyncio.gather(
                *(
                    c.post(
                        "/_ml/trained_models/minilm-queue/_infer",
                        json={"docs": [{"text_field": f"{i} {long_text}"}]},
                        headers={"authorization": f"ApiKey {auth}"},
                    )
                    for i in range(24)
                )
            )

    answers = asyncio.run(burst())
    codes = sorted({r.status_code for r in answers})
    assert set(codes) <= {200, 429} and 429 in codes and 200 in codes, codes
    rejected = next(r for r in answers if r.status_code == 429)
    assert rejected.headers.get("retry-after")
    assert rejected.headers.get("x-elastic-product") == "Elasticsearch"
    assert rejected.json()["error"]["type"] == "es_rejected_execution_exception"
    n_rejected = sum(r.status_code == 429 for r in answers)
    wait_for(
        "rejections counted",
        lambda: node_stats_total(es, "minilm-q", "rejected_execution_count") >= n_rejected or None,
    )


def test_pytorch_ner_model_from_torchscript(es: Elasticsearch, tiny_bert: Any) -> None:
    upload(es, "tiny-ner", tiny_bert.ner_torchscript, tiny_bert.ner_config, tiny_bert.vocabulary, "pytorch")
    es.ml.start_trained_model_deployment(model_id="tiny-ner", wait_for="started")
    text = "Jane Doe works at Elasticsearch in Mountain View, California."
    result = es.ml.infer_trained_model(model_id="tiny-ner", docs=[{"text_field": text}])
    entities = result["inference_results"][0]["entities"]
    assert [(e["entity"], e["class_name"]) for e in entities] == [
        ("jane doe", "PER"),
        ("elasticsearch", "ORG"),
        ("mountain view", "LOC"),
        ("california", "LOC"),
    ]
    first = entities[0]
    assert text[first["start_pos"] : first["end_pos"]] == "Jane Doe"
    assert "[Jane Doe](PER&Jane+Doe)" in result["inference_results"][0]["predicted_value"]


def test_text_classification_with_override(es: Elasticsearch, tiny_bert: Any) -> None:
    upload(es, "tiny-cls", tiny_bert.classifier_onnx, tiny_bert.classifier_config, tiny_bert.vocabulary)
    es.ml.start_trained_model_deployment(model_id="tiny-cls", wait_for="started")
    result = es.ml.infer_trained_model(model_id="tiny-cls", docs=[{"text_field": "the film was great!"}])
    first = result["inference_results"][0]
    assert first["predicted_value"] in ("negative", "neutral", "positive")
    assert len(first["top_classes"]) == 2
    assert 0.0 <= first["prediction_probability"] <= 1.0
    override = {"text_classification": {"num_top_classes": 3, "results_field": "label"}}
    again = es.ml.infer_trained_model(
        model_id="tiny-cls", docs=[{"text_field": "the film was great!"}], inference_config=override
    )["inference_results"][0]
    assert again["label"] == first["predicted_value"] and len(again["top_classes"]) == 3
    with pytest.raises(BadRequestError) as missing:
        es.ml.infer_trained_model(model_id="tiny-cls", docs=[{"other_field": "x"}])
    assert "Input field [text_field] does not exist in the source document" in str(missing.value)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"number_of_allocations": 0}, "[number_of_allocations] must be a positive integer"),
        (
            {"threads_per_allocation": 3},
            "[threads_per_allocation] must be a power of 2 less than or equal to 32",
        ),
        (
            {"threads_per_allocation": 64},
            "[threads_per_allocation] must be a power of 2 less than or equal to 32",
        ),
        ({"queue_capacity": 0}, "[queue_capacity] must be a positive integer"),
        ({"queue_capacity": 1_000_001}, "[queue_capacity] must be less than 1000000"),
        (
            {"priority": "low", "number_of_allocations": 2},
            "[number_of_allocations] must be 1 when [priority] is low",
        ),
        (
            {"priority": "urgent"},
            "No enum constant org.elasticsearch.xpack.core.ml.inference.assignment.Priority.URGENT",
        ),
        ({"wait_for": "soon"}, "wait_for"),
        ({"timeout": "0s"}, "[timeout] must be positive"),
        ({"timeout": "-5s"}, "negative durations are not supported"),
        ({"timeout": "soon"}, "failed to parse setting [timeout] with value [soon] as a time value"),
        ({"cache_size": "12xb"}, "failed to parse setting [cache_size] with value [12xb]"),
    ],
)
def test_start_validation_rules(es: Elasticsearch, params: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequestError) as info:
        es.ml.start_trained_model_deployment(model_id="whatever", **params)
    assert info.value.status_code == 400
    assert message in str(info.value), str(info.value)


def test_update_rules(es: Elasticsearch, tiny_bert: Any) -> None:
    upload(es, "tiny-upd", tiny_bert.classifier_onnx, tiny_bert.classifier_config, tiny_bert.vocabulary)
    with pytest.raises(ApiError) as info:
        es.ml.update_trained_model_deployment(model_id="tiny-upd", number_of_allocations=2)
    assert info.value.status_code == 409
    es.ml.start_trained_model_deployment(model_id="tiny-upd", wait_for="started")
    with pytest.raises(BadRequestError) as bad:
        es.ml.update_trained_model_deployment(
            model_id="tiny-upd", number_of_allocations=2, adaptive_allocations={"enabled": True}
        )
    assert "[number_of_allocations] cannot be set if adaptive allocations is enabled" in str(bad.value)
    with pytest.raises(BadRequestError) as bad:
        es.ml.update_trained_model_deployment(
            model_id="tiny-upd",
            adaptive_allocations={
                "enabled": True,
                "min_number_of_allocations": 3,
                "max_number_of_allocations": 2,
            },
        )
    assert bad.value.status_code == 400
    with pytest.raises(ConflictError):
        es.ml.start_trained_model_deployment(model_id="tiny-upd", wait_for="started")


def test_definition_part_errors(es: Elasticsearch, tiny_bert: Any) -> None:
    es.created.append("tiny-parts")  # type: ignore[attr-defined]
    es.ml.put_trained_model(
        model_id="tiny-parts",
        model_type="onnx",
        inference_config=tiny_bert.classifier_config,
        input={"field_names": ["text_field"]},
    )
    data = tiny_bert.classifier_onnx.read_bytes()
    half = len(data) // 2
    b64 = [base64.b64encode(data[:half]).decode(), base64.b64encode(data[half:]).decode()]
    es.ml.put_trained_model_definition_part(
        model_id="tiny-parts", part=0, definition=b64[0], total_definition_length=len(data), total_parts=2
    )
    with pytest.raises(ConflictError) as dup:
        es.ml.put_trained_model_definition_part(
            model_id="tiny-parts", part=0, definition=b64[0], total_definition_length=len(data), total_parts=2
        )
    assert "already exists" in str(dup.value)
    with pytest.raises(BadRequestError) as mismatch:
        es.ml.put_trained_model_definition_part(
            model_id="tiny-parts", part=1, definition=b64[1], total_definition_length=len(data), total_parts=3
        )
    assert "earlier parts declared" in str(mismatch.value)
    with pytest.raises(BadRequestError):
        es.ml.put_trained_model_definition_part(
            model_id="tiny-parts", part=5, definition=b64[1], total_definition_length=len(data), total_parts=2
        )
    with pytest.raises(BadRequestError) as bad64:
        es.ml.put_trained_model_definition_part(
            model_id="tiny-parts",
            part=1,
            definition="%%%not base64",
            total_definition_length=len(data),
            total_parts=2,
        )
    assert "base64" in str(bad64.value)
    es.ml.put_trained_model_vocabulary(model_id="tiny-parts", vocabulary=tiny_bert.vocabulary)
    with pytest.raises(BadRequestError) as missing:
        es.ml.start_trained_model_deployment(model_id="tiny-parts")
    assert "missing definition" in str(missing.value)
    with pytest.raises(BadRequestError) as truncated:
        es.ml.put_trained_model_definition_part(
            model_id="tiny-parts",
            part=1,
            definition=b64[1][:-8],
            total_definition_length=len(data),
            total_parts=2,
        )
    assert "truncated" in str(truncated.value)
    with pytest.raises(NotFoundError):
        es.ml.put_trained_model_definition_part(
            model_id="no-such-model",
            part=0,
            definition=b64[0],
            total_definition_length=len(data),
            total_parts=2,
        )


def test_wire_compatibility_of_8x_clients_and_errors(platform: RunningPlatform) -> None:
    auth = base64.b64encode(ADMIN_KEY.encode()).decode()
    ctype = "application/vnd.elasticsearch+json; compatible-with=8"
    with httpx.Client(base_url=platform.url) as c:
        r = c.post(
            "/_ml/trained_models/nothing-here/deployment/_stop",
            headers={"authorization": f"ApiKey {auth}", "content-type": ctype, "accept": ctype},
        )
        assert r.headers["x-elastic-product"] == "Elasticsearch"
        assert r.status_code == 404
        err = r.json()
        assert err["status"] == 404 and err["error"]["root_cause"][0]["type"] == err["error"]["type"]
        r = c.get("/_ml/trained_models", headers={"authorization": "ApiKey bm90OmFrZXk="})
        assert r.status_code == 401 and r.headers["x-elastic-product"] == "Elasticsearch"
        assert r.json()["error"]["type"] == "security_exception"
        r = c.put(
            "/_ml/trained_models/x1",
            content=b"{not json",
            headers={"authorization": f"ApiKey {auth}", "content-type": ctype},
        )
        assert r.status_code == 400 and r.json()["error"]["type"] == "x_content_parse_exception"
        r = c.post(
            "/_ml/trained_models/x1/_infer", json={"docs": []}, headers={"authorization": f"ApiKey {auth}"}
        )
        assert r.status_code in (400, 404)


def test_adaptive_allocations_scale_to_zero_and_back(es: Elasticsearch, tiny_bert: Any) -> None:
    """The test platform scales an idle deployment to zero after 3 s (MODELFLEET_SCALE_TO_ZERO_AFTER);
    the next request starts an allocation and waits for it instead of failing."""
    upload(es, "tiny-zero", tiny_bert.classifier_onnx, tiny_bert.classifier_config, tiny_bert.vocabulary)
    started = es.ml.start_trained_model_deployment(
        model_id="tiny-zero",
        wait_for="started",
        adaptive_allocations={
            "enabled": True,
            "min_number_of_allocations": 0,
            "max_number_of_allocations": 2,
        },
    )
    assert started["assignment"]["adaptive_allocations"]["enabled"] is True
    assert started["assignment"]["task_parameters"]["number_of_allocations"] == 1
    wait_for("scaled to zero", lambda: target_allocations(es, "tiny-zero") == 0 or None, timeout=30)
    wait_for("routes gone", lambda: allocation_count(es, "tiny-zero") == 0 or None, timeout=30)
    result = es.ml.infer_trained_model(
        model_id="tiny-zero", docs=[{"text_field": "the film was ok"}], timeout="20s"
    )
    assert result["inference_results"][0]["predicted_value"] in ("negative", "neutral", "positive")
    assert target_allocations(es, "tiny-zero") >= 1


def target_allocations(es: Elasticsearch, model_id: str) -> int:
    stats = es.ml.get_trained_models_stats(model_id=model_id)["trained_model_stats"][0]
    return int(stats["deployment_stats"]["number_of_allocations"])


def test_infer_privilege_can_infer_but_not_manage(
    es: Elasticsearch, tiny_bert: Any, platform: RunningPlatform
) -> None:
    upload(es, "tiny-priv", tiny_bert.classifier_onnx, tiny_bert.classifier_config, tiny_bert.vocabulary)
    es.ml.start_trained_model_deployment(model_id="tiny-priv", wait_for="started")
    with platform.client() as admin:
        created = admin.request("POST", "/api/v1/keys", json={"name": "es-app", "roles": ["infer"]})
    key_id, secret = created["api_key"].split(":", 1)
    with Elasticsearch(platform.url, api_key=(key_id, secret)) as app:
        result = app.ml.infer_trained_model(model_id="tiny-priv", docs=[{"text_field": "a great film"}])
        assert len(result["inference_results"]) == 1
        with pytest.raises(ApiError) as denied:
            app.ml.stop_trained_model_deployment(model_id="tiny-priv")
        assert denied.value.status_code == 403
        assert denied.value.body["error"]["type"] == "security_exception"
        with pytest.raises(ApiError) as denied:
            app.ml.delete_trained_model(model_id="tiny-priv", force=True)
        assert denied.value.status_code == 403
    assert es.ml.get_trained_models(model_id="tiny-priv")["count"] == 1


def test_fully_allocated_and_clamping_to_the_hardware(es: Elasticsearch, tiny_bert: Any) -> None:
    """The test nodes have 4 processors each (2 nodes): 16 threads are reduced to 4, and 9
    allocations of 4 threads to what the nodes hold (2), instead of being refused."""
    upload(es, "tiny-clamp", tiny_bert.classifier_onnx, tiny_bert.classifier_config, tiny_bert.vocabulary)
    started = es.ml.start_trained_model_deployment(
        model_id="tiny-clamp", threads_per_allocation=16, number_of_allocations=9, wait_for="fully_allocated"
    )["assignment"]
    params = started["task_parameters"]
    assert params["threads_per_allocation"] == 4
    assert params["number_of_allocations"] == 2
    current = sum(r["current_allocations"] for r in started["routing_table"].values())
    assert current == 2 and started["assignment_state"] == "started"
    stats = es.ml.get_trained_models_stats(model_id="tiny-clamp")["trained_model_stats"][0]
    assert stats["deployment_stats"]["allocation_status"]["state"] == "fully_allocated"


def test_a_deployment_no_node_has_room_for_answers_409_at_once(es: Elasticsearch, tiny_bert: Any) -> None:
    """Once the planner finds no room, `_infer` answers 409 "not allocated to any nodes" (with the
    planner's reason) at once, as Elasticsearch does, instead of waiting out its timeout."""
    upload(es, "tiny-full", tiny_bert.classifier_onnx, tiny_bert.classifier_config, tiny_bert.vocabulary)
    upload(es, "tiny-roomless", tiny_bert.classifier_onnx, tiny_bert.classifier_config, tiny_bert.vocabulary)
    es.ml.start_trained_model_deployment(  # every processor of both nodes
        model_id="tiny-full", threads_per_allocation=4, number_of_allocations=2, wait_for="fully_allocated"
    )
    es.ml.start_trained_model_deployment(model_id="tiny-roomless", wait_for="starting")

    def planned() -> dict[str, Any] | None:
        stats = es.ml.get_trained_models_stats(model_id="tiny-roomless")["trained_model_stats"][0]
        deployment: dict[str, Any] = stats["deployment_stats"]
        return deployment if deployment.get("reason", "") not in ("", "waiting for placement") else None

    verdict = wait_for("the planner's verdict", planned, timeout=30)["reason"]
    assert "not enough processors" in verdict
    with pytest.raises(ConflictError) as info:  # before: 408 once the timeout had passed
        es.ml.infer_trained_model(model_id="tiny-roomless", docs=[{"text_field": "x"}], timeout="5s")
    reason = str(info.value.body["error"]["reason"])
    assert "is not allocated to any nodes" in reason and verdict in reason
