"""The service deployment face (`/v1/{project_id}/services`, `/models`) on the real local platform:
the seed's samples, a 70/30 split over 2,000 requests, auto-stop, SMN notifications through a
subscribed SQS queue, a rolling upgrade that never breaches its floor, a canary that rolls back,
cross-project 404s."""

from __future__ import annotations

import base64
import contextlib
import copy
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import httpx
import pytest

from modelfleet.client import Client
from tests.e2e.platform import ADMIN_KEY, PLATFORM_KEY, RunningPlatform, start_platform, wait_for
from tests.e2e.test_services_support import (
    PROJECT,
    SERVICE_ENV,
    Api,
    Models,
    api_for,
    build_models,
    pool_node,
    subscribed_queue,
)

pytestmark = pytest.mark.e2e
POOL = "8abf68a969c3cb3a0169c4acb24b0000"

# The seed's seven sample requests, verbatim; `{A}`/`{B}` become registered model ids.
SAMPLES: dict[str, dict[str, Any]] = {
    "real-time": {
        "infer_type": "real-time",
        "service_name": "mnist",
        "description": "mnist service",
        "config": [
            {"specification": "modelarts.vm.cpu.2u", "weight": 100, "model_id": "{A}", "instance_count": 1}
        ],
    },
    "multi-version": {
        "service_name": "mnist",
        "description": "mnist service",
        "infer_type": "real-time",
        "config": [
            {
                "model_id": "{A}",
                "weight": "70",
                "specification": "modelarts.vm.cpu.2u",
                "instance_count": 1,
                "envs": {"model_name": "mxnet-model-1", "load_epoch": "0"},
            },
            {"model_id": "{B}", "weight": "30", "specification": "modelarts.vm.cpu.2u", "instance_count": 1},
        ],
    },
    "custom-in-pool": {
        "service_name": "realtime-demo",
        "description": "",
        "infer_type": "real-time",
        "cluster_id": POOL,
        "config": [
            {
                "model_id": "{A}",
                "weight": "100",
                "cluster_id": POOL,
                "specification": "custom",
                "custom_spec": {"cpu": 1.5, "memory": 7500, "gpu_p4": 0, "ascend_a310": 0},
                "instance_count": 1,
            }
        ],
    },
    "auto-stop": {
        "service_name": "service-demo",
        "description": "demo",
        "infer_type": "real-time",
        "config": [
            {"model_id": "{A}", "weight": "100", "specification": "modelarts.vm.cpu.2u", "instance_count": 1}
        ],
        "schedule": [{"type": "stop", "time_unit": "HOURS", "duration": 1}],
    },
    "batch-file": {
        "service_name": "batchservicetest",
        "description": "",
        "infer_type": "batch",
        "cluster_id": POOL,
        "config": [
            {
                "model_id": "{A}",
                "specification": "modelarts.vm.cpu.2u",
                "instance_count": 1,
                "src_path": "https://infers-data.obs.xxxxx.com/xgboosterdata/",
                "dest_path": "https://infers-data.obs.xxxxx.com/output/",
                "req_uri": "/",
                "mapping_type": "file",
            }
        ],
    },
    "batch-csv": {
        "service_name": "batchservicetest",
        "description": "",
        "infer_type": "batch",
        "config": [
            {
                "model_id": "{A}",
                "specification": "modelarts.vm.cpu.2u",
                "instance_count": 1,
                "src_path": "https://infers-data.obs.xxxxx.com/xgboosterdata/",
                "dest_path": "https://infers-data.obs.xxxxx.com/output/",
                "req_uri": "/",
                "mapping_type": "csv",
                "mapping_rule": {
                    "type": "object",
                    "properties": {
                        "data": {
                            "type": "object",
                            "properties": {
                                "req_data": {
                                    "type": "array",
                                    "items": [
                                        {
                                            "type": "object",
                                            "properties": {
                                                f"input{5 - i}": {"type": "number", "index": i}
                                                for i in range(5)
                                            },
                                        }
                                    ],
                                }
                            },
                        }
                    },
                },
            }
        ],
    },
    "edge": {
        "service_name": "service-edge-demo",
        "description": "",
        "infer_type": "edge",
        "config": [
            {
                "model_id": "{A}",
                "specification": "custom",
                "instance_count": 1,
                "custom_spec": {"cpu": 1.5, "memory": 7500, "gpu_p4": 0, "ascend_a310": 0},
                "envs": {},
                "nodes": ["2r8c4fb9-t497-40u3-89yf-skui77db0472"],
            }
        ],
    },
}


def sample(name: str, **ids: str) -> dict[str, Any]:
    body = copy.deepcopy(SAMPLES[name])
    for c in body["config"]:
        c["model_id"] = ids[c["model_id"].strip("{}")]
    return body


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    running = start_platform(tmp_path_factory.mktemp("services-platform"), extra_env=SERVICE_ENV)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    return build_models(tmp_path_factory.mktemp("service-models"))


@pytest.fixture(scope="module")
def ids(platform: RunningPlatform, models: Models) -> dict[str, str]:
    api = api_for(platform)
    return {
        "A": api.register(models.good, "digits", "1.0.0"),
        "B": api.register(models.good, "digits", "2.0.0"),
        "BAD": api.register(models.bad, "digits", "3.0.0"),
    }


@pytest.fixture
def api(platform: RunningPlatform) -> Iterator[Api]:
    client = api_for(platform)
    yield client
    client.delete_all()
    client.http.close()


def test_models_of_every_face_are_one_registry(
    platform: RunningPlatform, models: Models, api: Api, ids: dict[str, str]
) -> None:
    with platform.client() as native:
        uploaded = native.register_model(models.good, name="native-digits", format="onnx", version="9")
    listed = {m["model_id"]: m for m in api.ok("GET", "/models")["models"]}
    assert {ids["A"], ids["B"], uploaded["model_id"]} <= set(listed)
    assert listed[ids["A"]]["model_version"] == "1.0.0" and listed[ids["A"]]["model_status"] == "published"
    # a model uploaded through /api/v1 deploys here by its model_id
    created = api.create(sample("real-time", A=uploaded["model_id"]))
    running = api.wait_status(created["service_id"], "running")
    assert running["config"][0]["model_name"] == "native-digits"
    assert api.call("GET", "/models/no-such-model") == (
        404,
        {"error_code": "ModelArts.3602", "error_msg": "model 'no-such-model' was not found"},
    )


def test_real_time_samples_run(api: Api, ids: dict[str, str], models: Models) -> None:
    first = api.create(sample("real-time", A=ids["A"]))
    assert set(first) == {"service_id", "resource_ids"} and first["resource_ids"]
    view = api.wait_status(first["service_id"], "running")
    assert view["ready_instance_count"] == 1 and view["config"][0]["threads_per_instance"] == 2
    r = api.infer(first["service_id"], models.x[:2])
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["shape"][0] == 2
    # the version also answers on the Open Inference Protocol route
    oip = api.http.post(
        f"/v2/models/{first['service_id']}/versions/1.0.0/infer",
        json={
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": models.x[0].tolist()}]
        },
    )
    assert oip.status_code == 200, oip.text
    api.delete_all()

    stopping = api.create(sample("auto-stop", A=ids["A"]))
    view = wait_for(
        "the stop schedule", lambda: (s := api.service(stopping["service_id"])).get("auto_stop_at") and s
    )
    assert view["status"] == "running"
    running_since_ms = datetime.fromisoformat(view["running_since"]).timestamp() * 1000
    assert view["auto_stop_at"] - running_since_ms == pytest.approx(60_000, abs=1)  # 1 HOURS = 60 s here
    assert view["schedule"] == [{"type": "stop", "time_unit": "HOURS", "duration": 1}]


def test_weights_split_70_30_over_2000_requests(api: Api, ids: dict[str, str], models: Models) -> None:
    created = api.create(sample("multi-version", A=ids["A"], B=ids["B"]))
    sid = created["service_id"]
    view = api.wait_status(sid, "running")
    assert {c["version_id"]: c["weight"] for c in view["config"]} == {"1.0.0": 70, "2.0.0": 30}

    def one(i: int) -> str:
        r = api.infer(sid, models.x[i % 16 : i % 16 + 1])
        assert r.status_code == 200, r.text
        return r.headers["x-model-version"]

    with ThreadPoolExecutor(max_workers=4) as pool:  # the gateway picks one request at a time
        counts = Counter(pool.map(one, range(2000)))
    assert abs(counts["1.0.0"] - 1400) <= 60 and abs(counts["2.0.0"] - 600) <= 60, counts


def test_custom_specification_in_a_dedicated_pool(
    platform: RunningPlatform, api: Api, ids: dict[str, str], models: Models
) -> None:
    body = sample("custom-in-pool", A=ids["A"])
    status, answer = api.call("POST", "/services", body)
    assert (status, answer["error_code"]) == (400, "ModelArts.3005")  # no node in that pool yet
    nodes = pool_node(platform, POOL, "pool-node-1")
    next(nodes)
    try:
        wait_for("the pool node", lambda: POOL in {n.get("pool") for n in _nodes(platform)}, timeout=30)
        created = api.create(body)
        api.wait_status(created["service_id"], "running")
        assert api.infer(created["service_id"], models.x[:1]).status_code == 200
        with platform.client() as c:
            table = c.get_deployment(created["service_id"])["routing_table"]
        assert set(table) == {"pool-node-1"}  # placed in the pool only; 1.5 cpu -> 2 threads
        api.delete_all()
    finally:
        with contextlib.suppress(StopIteration):
            next(nodes)


def _nodes(platform: RunningPlatform) -> list[dict[str, Any]]:
    with platform.client() as c:
        nodes: list[dict[str, Any]] = c.request("GET", "/api/v1/nodes")["nodes"]
        return nodes


@pytest.mark.parametrize("name", ["batch-file", "batch-csv", "edge"])
def test_batch_and_edge_samples_are_handed_to_their_engines(api: Api, ids: dict[str, str], name: str) -> None:
    body = sample(name, A=ids["A"])
    if name == "batch-file":
        body.pop("cluster_id")  # no pool in this platform; the pool rule is the custom-spec test's
    status, answer = api.call("POST", "/services", body)
    if status == 200:
        api.created.append(answer["service_id"])
        assert answer["service_id"] and isinstance(answer["resource_ids"], list)
        assert api.service(answer["service_id"])["infer_type"] == body["infer_type"]
    else:  # validated here, then refused by (or for want of) the engine: a face error, never a 500
        # (the batch engine takes s3:// paths only; the edge engine knows only registered nodes)
        assert status in (400, 403, 501) and answer["error_code"].startswith("ModelArts."), answer


def test_auto_stop_and_notifications(platform: RunningPlatform, api: Api, ids: dict[str, str]) -> None:
    topic = subscribed_queue(platform, "svc-notify")
    body = sample("real-time", A=ids["A"])
    body["schedule"] = [{"type": "stop", "time_unit": "MINUTES", "duration": 2}]  # 2 s on this platform
    body["additional_properties"] = {"smn_notification": {"topic_urn": topic.topic_arn, "events": [3, 11]}}
    bad = copy.deepcopy(body)
    bad["additional_properties"]["smn_notification"]["topic_urn"] = topic.topic_arn + "-missing"
    status, answer = api.call("POST", "/services", bad)
    assert (status, answer["error_code"]) == (400, "ModelArts.3017")

    sid = api.create(body)["service_id"]
    stopped = api.wait_status(sid, "stopped", timeout=40)
    assert "schedule" in stopped["status_reason"]

    def history() -> list[str]:
        return [e["status"] for e in api.ok("GET", f"/services/{sid}/events")["events"]]

    wait_for("the stopped event", lambda: history()[-1] == "stopped", timeout=10)
    assert "running" in history(), history()

    # a service no node can hold stays pending (event 11)
    pending = copy.deepcopy(body)
    pending.pop("schedule")
    pending["config"][0]["specification"] = "modelarts.vm.cpu.8u"
    pid = api.create(pending)["service_id"]
    api.wait_status(pid, "pending")
    wanted = {(sid, 3, "running"), (pid, 11, "pending")}
    got = topic.received(lambda ms: {(m["service_id"], m["event"], m["status"]) for m in ms} >= wanted)
    assert {(m["service_id"], m["event"], m["status"]) for m in got} >= wanted, got
    assert all(m["event"] in (3, 11) for m in got)  # stopped is not a subscribed event


def test_a_lost_instance_makes_the_service_concerning(
    platform: RunningPlatform, api: Api, ids: dict[str, str]
) -> None:
    topic = subscribed_queue(platform, "svc-concern")
    body = sample("real-time", A=ids["A"])
    body["additional_properties"] = {"smn_notification": {"topic_urn": topic.topic_arn, "events": [3, 7]}}
    # one 4-cpu instance fills a node: a lost one cannot move to the other node until its own returns
    body["config"][0].update(specification="modelarts.vm.cpu.4u", instance_count=2)
    sid = api.create(body)["service_id"]
    api.wait_status(sid, "running")
    wait_for("running_since", lambda: api.service(sid)["running_since"])
    with platform.client() as c:
        nodes = sorted(c.get_deployment(sid)["routing_table"])
    assert nodes == ["node-1", "node-2"]
    os.kill(platform.node_pids()["node-1"], signal.SIGKILL)  # the platform restarts it
    got = topic.received(
        lambda ms: [m["event"] for m in ms if m["service_id"] == sid][-2:] == [7, 3], timeout=60
    )
    events = [m["event"] for m in got if m["service_id"] == sid]
    assert 7 in events and events[-1] == 3, got  # concerning, then running again elsewhere
    history = [e["status"] for e in api.ok("GET", f"/services/{sid}/events")["events"]]
    assert "concerning" in history


def test_rolling_upgrade_never_breaches_its_floor(api: Api, ids: dict[str, str], models: Models) -> None:
    body = sample("real-time", A=ids["A"])
    body["config"][0]["instance_count"] = 2
    sid = api.create(body)["service_id"]
    api.wait_status(sid, "running")
    update = {
        "config": [
            {
                "model_id": ids["B"],
                "weight": 100,
                "specification": "modelarts.vm.cpu.2u",
                "instance_count": 2,
                "additional_properties": {"max_surge": 1, "termination_grace_period_seconds": 1},
            }
        ]
    }
    api.ok("PUT", f"/services/{sid}", update)
    samples: list[tuple[int, int]] = []

    def finished() -> bool:
        s = api.service(sid)
        samples.append((s["ready_instance_count"], s["instance_count"]))
        return s["update_status"] == "done"

    wait_for("the rolling upgrade", finished, timeout=60, interval=0.05)
    assert min(ready for ready, _ in samples) >= 2, samples  # instance_count - max_unavailable(0)
    assert max(wanted for _, wanted in samples) <= 3, samples  # instance_count + max_surge(1)
    assert len(samples) > 3
    final = api.service(sid)
    assert [(c["model_id"], c["instance_count"]) for c in final["config"]] == [(ids["B"], 2)]
    assert api.infer(sid, models.x[:1]).headers["x-model-version"] == "2.0.0"


def test_canary_with_a_failing_version_rolls_back(
    platform: RunningPlatform, api: Api, ids: dict[str, str], models: Models
) -> None:
    topic = subscribed_queue(platform, "svc-canary")
    body = sample("real-time", A=ids["A"])
    body["additional_properties"] = {"smn_notification": {"topic_urn": topic.topic_arn, "events": [1]}}
    sid = api.create(body)["service_id"]
    api.wait_status(sid, "running")
    update = {
        "config": [
            {
                "model_id": ids["BAD"],
                "weight": 100,
                "specification": "modelarts.vm.cpu.2u",
                "instance_count": 1,
            }
        ],
        "rollout": {
            "strategy": "canary",
            "steps": [50, 100],
            "bake_seconds": 2,
            "max_error_rate": 0.1,
            "min_requests": 5,
        },
    }
    api.ok("PUT", f"/services/{sid}", update)
    stop = threading.Event()
    statuses: Counter[int] = Counter()

    def traffic() -> None:
        while not stop.is_set():
            statuses[api.infer(sid, models.x[:1]).status_code] += 1
            time.sleep(0.01)

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        done = wait_for(
            "the canary to be judged",
            lambda: (s := api.service(sid))["update_status"] in ("rolled_back", "done") and s,
            timeout=60,
            interval=0.1,
        )
    finally:
        stop.set()
        thread.join(timeout=10)
    assert done["update_status"] == "rolled_back", done
    assert "error rate" in done["update_reason"]
    assert statuses[400] > 0  # the bad version did get (and fail) its share
    assert [(c["model_id"], c["weight"]) for c in done["config"]] == [(ids["A"], 100)]
    events = api.ok("GET", f"/services/{sid}/events")["events"]
    assert any(e["event_code"] == 1 and e["update"] == "rolled_back" for e in events), events
    got = topic.received(lambda ms: any(m["event"] == 1 for m in ms))
    assert any(m["event"] == 1 and "rolled back" in m["reason"] for m in got), got
    wait_for(
        "traffic back on the old version",
        lambda: all(api.infer(sid, models.x[:1]).status_code == 200 for _ in range(20)),
        timeout=20,
    )


def test_canary_gate_judges_the_p95_latency(api: Api, ids: dict[str, str], models: Models) -> None:
    """A healthy new version (no errors) whose p95 exceeds the threshold is rolled back: the nodes'
    latency histograms reach the gate through the heartbeats. A threshold no real inference can
    meet (0.0001 ms) makes the outcome certain without depending on the machine's speed."""
    sid = api.create(sample("real-time", A=ids["A"]))["service_id"]
    api.wait_status(sid, "running")
    config = [
        {"model_id": ids["B"], "weight": 100, "specification": "modelarts.vm.cpu.2u", "instance_count": 1}
    ]
    canary = {"strategy": "canary", "steps": [100], "bake_seconds": 1, "min_requests": 5}
    for bad_limit, message in (
        ({"max_p95_latency_ms": 0}, "max_p95_latency_ms must be > 0"),
        ({"max_latency_ms": -1}, "max_p95_latency_ms must be > 0"),  # the earlier name, same rule
        ({"max_p95_latency_ms": 5, "max_latency_ms": 6}, "give max_p95_latency_ms only"),
    ):
        status, answer = api.call(
            "PUT", f"/services/{sid}", {"config": config, "rollout": {**canary, **bad_limit}}
        )
        assert (status, answer["error_code"]) == (400, "ModelArts.3025"), answer
        assert message in answer["error_msg"], answer
    api.ok("PUT", f"/services/{sid}", {"config": config, "rollout": {**canary, "max_p95_latency_ms": 0.0001}})
    stop = threading.Event()
    statuses: Counter[int] = Counter()

    def traffic() -> None:
        while not stop.is_set():
            statuses[api.infer(sid, models.x[:1]).status_code] += 1
            stop.wait(0.01)

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        done = wait_for(
            "the canary to be judged",
            lambda: (s := api.service(sid))["update_status"] in ("rolled_back", "done") and s,
            timeout=60,
            interval=0.1,
        )
    finally:
        stop.set()
        thread.join(timeout=10)
    assert done["update_status"] == "rolled_back", done
    assert "p95 latency" in done["update_reason"] and "max_p95_latency_ms 0.0001" in done["update_reason"]
    assert set(statuses) == {200}, statuses  # both versions answered every request: no error gate
    assert [(c["model_id"], c["weight"]) for c in done["config"]] == [(ids["A"], 100)]


def test_another_projects_services_do_not_exist(
    platform: RunningPlatform, api: Api, ids: dict[str, str]
) -> None:
    sid = api.create(sample("real-time", A=ids["A"]))["service_id"]
    project = f"svc-other-{int(time.time())}"
    with Client(platform.url, PLATFORM_KEY, ca_file=platform.ca_file) as root:
        key = root.request("POST", "/api/v1/projects", json={"project_id": project})["admin_key"]["api_key"]
    other = api_for(platform, key, project)
    try:
        for method, path in [
            ("GET", f"/services/{sid}"),
            ("PUT", f"/services/{sid}"),
            ("DELETE", f"/services/{sid}"),
            ("GET", f"/services/{sid}/events"),
            ("POST", f"/services/{sid}/stop"),
            ("GET", f"/models/{ids['A']}"),
        ]:
            status, answer = other.call(
                method, path, {"description": "x"} if method == "PUT" else None, project=PROJECT
            )
            assert status == 404, (method, path, answer)
            assert sid not in str(answer) or "not found" in answer["error_msg"]
        status, answer = other.call("GET", "/services", project=PROJECT)
        assert (status, answer["error_code"]) == (403, "ModelArts.0105")
        r = other.http.post(f"/v1/{PROJECT}/services/{sid}/infer", json={})
        assert r.status_code == 404 and r.json()["error_code"] == "ModelArts.3501"
        # in its own project the id does not exist either
        assert other.call("GET", f"/services/{sid}")[0] == 404
        assert other.ok("GET", "/services")["total_count"] == 0
    finally:
        other.http.close()
    # start and stop, through PUT status (ModelArts' way) and the action routes
    api.wait_status(sid, "running")
    assert api.ok("PUT", f"/services/{sid}", {"status": "stopped"})["status"] in ("stopping", "stopped")
    api.wait_status(sid, "stopped")
    assert api.call("POST", f"/services/{sid}/stop")[0] == 200  # idempotent
    api.ok("POST", f"/services/{sid}/start")
    api.wait_status(sid, "running")
    status, answer = api.call("POST", f"/services/{sid}/start")
    assert (status, answer["error_code"]) == (409, "ModelArts.3502")


def test_concurrent_starts_of_a_stopped_service_start_it_once(api: Api, ids: dict[str, str]) -> None:
    """One start wins; the others see a running service (3502), never a 'changed; retry' (3503)
    that a losing write used to pass on (a CI failure: the planner settling the stop raced it)."""
    sid = api.create(sample("real-time", A=ids["A"]))["service_id"]
    api.wait_status(sid, "running")
    api.ok("POST", f"/services/{sid}/stop")
    api.wait_status(sid, "stopped")
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: api.call("POST", f"/services/{sid}/start"), range(4)))
    codes = sorted(str(status) if status == 200 else f"{status} {a['error_code']}" for status, a in answers)
    assert codes == ["200", "409 ModelArts.3502", "409 ModelArts.3502", "409 ModelArts.3502"], answers
    api.wait_status(sid, "running")
    api.ok("DELETE", f"/services/{sid}")


def _base(ids: dict[str, str]) -> dict[str, Any]:
    return sample("real-time", A=ids["A"])


def _set(path: str, value: Any) -> Any:
    def apply(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = body
        for p in parents:
            node = node[int(p)] if p.isdigit() else node.setdefault(p, {})
        if value is _DROP:
            node.pop(last)
        else:
            node[last] = value

    return apply


_DROP = object()
VOLUME = {"log_volume": [{"host_path": "/var/log", "mount_path": "/logs"}]}

VALIDATION = [
    ("name-empty", _set("service_name", ""), "ModelArts.3001"),
    ("name-long", _set("service_name", "x" * 65), "ModelArts.3001"),
    ("name-missing", _set("service_name", _DROP), "ModelArts.0102"),
    ("description-long", _set("description", "d" * 101), "ModelArts.3002"),
    ("description-chars", _set("description", "a<b"), "ModelArts.3002"),
    ("infer-type", _set("infer_type", "streaming"), "ModelArts.3003"),
    ("vpc-alone", _set("vpc_id", "vpc-1"), "ModelArts.3004"),
    ("unknown-pool", _set("pool_name", "no-such-pool"), "ModelArts.3005"),
    ("unknown-config-pool", _set("config.0.cluster_id", "no-such-pool"), "ModelArts.3005"),
    ("config-empty", _set("config", []), "ModelArts.3006"),
    ("weight-missing", _set("config.0.weight", _DROP), "ModelArts.3007"),
    ("weight-text", _set("config.0.weight", "seventy"), "ModelArts.3007"),
    ("weight-range", _set("config.0.weight", 101), "ModelArts.3007"),
    ("weight-sum", _set("config.0.weight", 60), "ModelArts.3008"),
    ("spec-unknown", _set("config.0.specification", "modelarts.vm.cpu.64u"), "ModelArts.3010"),
    ("custom-without-spec", _set("config.0.specification", "custom"), "ModelArts.3011"),
    ("gpu", _set("config.0.specification", "modelarts.vm.gpu.p4"), "ModelArts.3026"),
    ("instances-zero", _set("config.0.instance_count", 0), "ModelArts.3014"),
    ("instances-six", _set("config.0.instance_count", 6), "ModelArts.3014"),
    ("instances-text", _set("config.0.instance_count", "two"), "ModelArts.3014"),
    ("timeout", _set("config.0.deploy_timeout_in_seconds", 0), "ModelArts.3015"),
    (
        "schedule-type",
        _set("schedule", [{"type": "start", "time_unit": "HOURS", "duration": 1}]),
        "ModelArts.3016",
    ),
    (
        "schedule-unit",
        _set("schedule", [{"type": "stop", "time_unit": "WEEKS", "duration": 1}]),
        "ModelArts.3016",
    ),
    (
        "schedule-duration",
        _set("schedule", [{"type": "stop", "time_unit": "HOURS", "duration": 0}]),
        "ModelArts.3016",
    ),
    (
        "smn-topic",
        _set(
            "additional_properties",
            {"smn_notification": {"topic_urn": "arn:aws:sns:us-east-1:000000000000:nope", "events": [1]}},
        ),
        "ModelArts.3017",
    ),
    (
        "smn-events",
        _set("additional_properties", {"smn_notification": {"topic_urn": "t", "events": [2]}}),
        "ModelArts.3018",
    ),
    ("volume-public-pool", _set("config.0.additional_properties", VOLUME), "ModelArts.3019"),
    ("max-surge", _set("config.0.additional_properties", {"max_surge": 0}), "ModelArts.3020"),
    ("max-unavailable", _set("config.0.additional_properties", {"max_unavailable": -1}), "ModelArts.3020"),
    (
        "grace",
        _set("config.0.additional_properties", {"termination_grace_period_seconds": -1}),
        "ModelArts.3027",
    ),
    ("envs", _set("config.0.envs", {"1BAD": "x"}), "ModelArts.3023"),
    ("lts", _set("additional_properties", {"log_report_channels": [{"type": "ELK"}]}), "ModelArts.3024"),
    ("batch-field-on-real-time", _set("config.0.src_path", "s3://bucket/in/"), "ModelArts.3031"),
    ("unknown-field", _set("config.0.replicas", 2), "ModelArts.0102"),
    ("model-missing", _set("config.0.model_id", "no-such-model"), "ModelArts.3028"),
]


@pytest.mark.parametrize(("case", "mutate", "code"), VALIDATION, ids=[c[0] for c in VALIDATION])
def test_every_validation_rule_has_its_code(
    api: Api, ids: dict[str, str], case: str, mutate: Any, code: str
) -> None:
    body = _base(ids)
    mutate(body)
    status, answer = api.call("POST", "/services", body)
    expected = 404 if code == "ModelArts.3028" else 400
    assert (status, answer["error_code"]) == (expected, code), answer
    assert answer["error_msg"]


@pytest.mark.parametrize(
    ("case", "body", "code"),
    [
        ("batch-two-models", {"infer_type": "batch", "n": 2}, "ModelArts.3006"),
        ("batch-missing-src", {"infer_type": "batch", "drop": "src_path"}, "ModelArts.3021"),
        ("batch-csv-no-rule", {"infer_type": "batch", "csv": True}, "ModelArts.3021"),
        ("edge-no-nodes", {"infer_type": "edge", "drop": "nodes"}, "ModelArts.3022"),
        ("schedule-on-batch", {"infer_type": "batch", "schedule": True}, "ModelArts.3016"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_batch_and_edge_rules(
    api: Api, ids: dict[str, str], case: str, body: dict[str, Any], code: str
) -> None:
    req = sample("batch-csv" if body["infer_type"] == "batch" else "edge", A=ids["A"])
    if body.get("n") == 2:
        req["config"].append({**req["config"][0], "model_id": ids["B"]})
    if "drop" in body:
        req["config"][0].pop(body["drop"])
    if body.get("csv"):
        req["config"][0].pop("mapping_rule")
    if body.get("schedule"):
        req["schedule"] = [{"type": "stop", "time_unit": "HOURS", "duration": 1}]
    status, answer = api.call("POST", "/services", req)
    assert (status, answer["error_code"]) == (400, code), answer


def test_malformed_bodies_and_routes(api: Api) -> None:
    r = api.http.post(
        f"/v1/{PROJECT}/services", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert (r.status_code, r.json()["error_code"]) == (400, "ModelArts.0101")
    r = api.http.post(f"/v1/{PROJECT}/services", content=b"[]", headers={"content-type": "application/json"})
    assert (r.status_code, r.json()["error_code"]) == (400, "ModelArts.0101")
    r = api.http.post(f"/v1/{PROJECT}/services", content=b"a=b", headers={"content-type": "text/plain"})
    assert (r.status_code, r.json()["error_code"]) == (415, "ModelArts.0103")
    assert api.call("GET", "/services/nope")[1]["error_code"] == "ModelArts.3501"
    r = api.http.get(f"/v1/{PROJECT}/services", headers={"X-Auth-Token": "mfk_nobody:wrong"})
    assert (r.status_code, r.json()["error_code"]) == (401, "ModelArts.0104")
    assert api.call("GET", "/services?limit=0")[1]["error_code"] == "ModelArts.0102"
    apikey = base64.b64encode(ADMIN_KEY.encode()).decode()
    r = httpx.get(
        api.http.base_url.join(f"/v1/{PROJECT}/services"), headers={"Authorization": f"ApiKey {apikey}"}
    )
    assert r.status_code == 200 and "services" in r.json()
