"""`/metrics`: Prometheus text that prometheus-client's parser reads, counting the gateway's
answers per deployment and version, the nodes' queue depth, rejections and cache hits, and node
health, scoped to the caller's project."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelfleet.examples.digits import build_example, sample_row
from modelfleet.sdk import Client
from tests.e2e.platform import ADMIN_KEY, PLATFORM_KEY, RunningPlatform, wait_for

pytestmark = pytest.mark.e2e


def scrape(platform: RunningPlatform, key: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{platform.url}/metrics", headers=headers, verify=platform.ca_file or True, timeout=30)


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def value(found: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(v for n, ls, v in found if n == name and all(ls.get(k) == want for k, want in labels.items()))


@pytest.fixture(scope="module")
def deployed(platform: RunningPlatform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    name = f"metrics-{uuid.uuid4().hex[:6]}"
    path = build_example(tmp_path_factory.mktemp("metrics"))
    with Client(platform.url, ADMIN_KEY, ca_file=platform.ca_file) as c:
        model = c.push_model(path, name="digits", format="onnx")
        c.create_deployment(deployment_id=name, model_id=model.model_id)
        c.wait_until_started(name, timeout=90)
        yield name
        c.delete_deployment(name, force=True)


def test_metrics_parse_and_count_inferences_per_deployment_and_version(
    platform: RunningPlatform, deployed: str
) -> None:
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": sample_row()}]}
    with Client(platform.url, ADMIN_KEY, ca_file=platform.ca_file) as c:
        for _ in range(5):
            c.infer_json(deployed, body)
        bad = httpx.post(
            f"{platform.url}/v2/models/{deployed}/infer",
            json={"inputs": [{"name": "nope", "datatype": "FP32", "shape": [1], "data": [1.0]}]},
            headers={"authorization": f"Bearer {ADMIN_KEY}"},
            verify=platform.ca_file or True,
        )
        assert bad.status_code == 400

    r = scrape(platform, ADMIN_KEY)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    found = samples(r.text)
    mine = {"project": "default", "deployment": deployed, "version": "1"}
    assert value(found, "modelfleet_inference_requests_total", code="200", **mine) == 5
    assert value(found, "modelfleet_inference_requests_total", code="400", **mine) == 1
    assert value(found, "modelfleet_inference_latency_seconds_count", **mine) == 6
    assert value(found, "modelfleet_inference_latency_seconds_bucket", le="+Inf", **mine) == 6
    assert value(found, "modelfleet_inference_latency_seconds_sum", **mine) > 0
    assert value(found, "modelfleet_inference_rejections_total", **mine) == 0
    assert sum(v for n, _, v in found if n == "modelfleet_node_up") >= 1

    # the nodes' counters arrive with their next heartbeats
    def node_counted() -> bool:
        return (
            value(
                samples(scrape(platform, ADMIN_KEY).text),
                "modelfleet_node_inferences_total",
                deployment=deployed,
            )
            >= 5
        )

    wait_for("the nodes' stats to reach /metrics", node_counted, timeout=20)
    again = samples(scrape(platform, ADMIN_KEY).text)
    assert any(n == "modelfleet_queue_depth" and ls.get("deployment") == deployed for n, ls, _ in again)
    assert any(n == "modelfleet_cache_hits_total" and ls.get("deployment") == deployed for n, ls, _ in again)


def test_metrics_are_scoped_to_the_callers_project(platform: RunningPlatform, deployed: str) -> None:
    assert scrape(platform, None).status_code == 401
    assert scrape(platform, "mfk_nobody:wrong").status_code == 401
    project = f"metrics-other-{uuid.uuid4().hex[:6]}"
    with Client(platform.url, PLATFORM_KEY, ca_file=platform.ca_file) as admin:
        created = admin.request("POST", "/api/v1/projects", json={"project_id": project})
    other_key = created["admin_key"]["api_key"]
    other = scrape(platform, other_key)
    assert other.status_code == 200
    assert deployed not in other.text and 'project="default"' not in other.text
    assert any(n == "modelfleet_node_up" for n, _, _ in samples(other.text))  # shared nodes' health
    everything = scrape(platform, PLATFORM_KEY)  # the platform admin sees every project
    assert deployed in everything.text
