"""Pipelines driven by the official `craft-ai-sdk` client (0.74) against the running local
platform: create a pipeline from a local folder, endpoint and periodic deployments, triggers with
and without an endpoint token, manual runs, executions with their logs and outputs, the data
store, update and delete; then the engine's rules: a schedule firing on the local scheduler's
(faster, injected) clock, Queue order with the seed's retry (after the next execution),
Parallel N=4 overlapping, Elastic waking from stand-by, separate logs of interleaved executions,
the RAM limit, and a source archive with a path traversal refused."""

from __future__ import annotations

import io
import signal
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import jwt
import psutil
import pytest
from craft_ai_sdk import CraftAiSdk, Input, InputSource, Output, OutputDestination
from craft_ai_sdk.exceptions import SdkException

from tests.e2e.platform import ADMIN_KEY, RunningPlatform, start_platform, wait_for

pytestmark = pytest.mark.e2e

PIPELINE_ENV = {
    "MODELFLEET_PIPELINE_STANDBY_AFTER": "1.5",  # elastic deployments idle this long go to stand-by
    "MODELFLEET_PIPELINE_LONG_POLL": "1",  # waits held this long, then "not yet" (307 on outputs)
    # The local scheduler's injected clock runs 60x: a CRON minute passes every real second.
    "MODELFLEET_PIPELINE_CLOCK_RATE": "60",
}

MAIN = '''
import asyncio, json, logging, os, sys, time
from pathlib import Path


def add(x, y=1):
    print(f"adding {x} and {y}")
    logging.getLogger("pipeline").warning("logged %s", x)
    print("to stderr", file=sys.stderr)
    return {"total": x + y}


def journal(tag, journal_path, gate_path="", fail_first=False):
    """Appends `tag` to a journal; waits for a gate file (a bounded wait) when asked."""
    path = Path(journal_path)
    seen = path.read_text().split() if path.exists() else []
    with path.open("a") as f:
        f.write(tag + "\\n")
    if gate_path:
        deadline = time.monotonic() + 30
        while not Path(gate_path).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    if fail_first and tag not in seen:
        raise RuntimeError(f"first attempt of {tag} fails")
    return {"tag": tag}


async def overlap(tag, rounds=20):
    """Interleaved with its siblings: each round prints, logs and yields to the loop."""
    start = time.time()
    for i in range(rounds):
        print(f"{tag} round {i}")
        logging.getLogger("pipeline").warning("%s logged %d", tag, i)
        await asyncio.sleep(0.01)
    return {"tag": tag, "start": start, "end": time.time()}


def hog(megabytes):
    blob = bytearray(megabytes * 1024 * 1024)
    for i in range(0, len(blob), 4096):
        blob[i] = 1
    if megabytes > 10:
        time.sleep(10)  # holds the memory until the watchdog stops it
    return {"n": len(blob)}


def tick():
    print("tick")
    return {"at": time.time()}
'''


@pytest.fixture(scope="module")
def pipeline_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    running = start_platform(tmp_path_factory.mktemp("pipelines"), extra_env=PIPELINE_ENV, nodes=0)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def sdk(pipeline_platform: RunningPlatform) -> CraftAiSdk:
    url = f"{pipeline_platform.url}/mlops"
    return CraftAiSdk(sdk_token=ADMIN_KEY, environment_url=url, control_url=url, verbose_log=False)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("source")
    (folder / "src").mkdir()
    (folder / "src" / "main.py").write_text(MAIN)
    (folder / "requirements.txt").write_text("numpy>=1\n")
    return folder


def make_pipeline(
    sdk: CraftAiSdk, source: Path, name: str, function: str, inputs: list[Input], outputs: list[Output]
) -> dict[str, Any]:
    return sdk.create_pipeline(
        name,
        function_path="src/main.py",
        function_name=function,
        container_config={"local_folder": str(source)},
        inputs=inputs,
        outputs=outputs,
    )


def test_the_client_drives_pipelines_end_to_end(sdk: CraftAiSdk, source: Path, tmp_path: Path) -> None:
    p = make_pipeline(
        sdk,
        source,
        "adder",
        "add",
        [Input("x", "number"), Input("y", "number", is_required=False)],
        [Output("total", "number")],
    )
    assert p["creation_info"]["status"] == "ready"
    assert p["parameters"]["inputs"][0]["name"] == "x"
    assert any(i["pipeline_name"] == "adder" for i in sdk.list_pipelines())

    # An endpoint deployment (low latency: warm before the first call) and its token, shown once.
    d = sdk.create_deployment(
        "adder",
        "adder-ep",
        execution_rule="endpoint",
        mode="low_latency",
        endpoint_token="tok-" + "a" * 30,
        inputs_mapping=[
            InputSource("x", endpoint_input_name="x"),
            InputSource("y", endpoint_input_name="y", default_value=10),
        ],
        outputs_mapping=[OutputDestination("total", endpoint_output_name="total")],
    )
    assert d["status"] == "up" and d["execution_rule"] == "endpoint"
    assert "endpoint_token" not in d

    res = sdk.trigger_endpoint("adder-ep", inputs={"x": 5})
    assert res["outputs"] == {"total": 15}
    res2 = sdk.trigger_endpoint("adder-ep", endpoint_token="tok-" + "a" * 30, inputs={"x": 1, "y": 2})
    assert res2["outputs"] == {"total": 3}
    with pytest.raises(SdkException) as bad_token:
        sdk.trigger_endpoint("adder-ep", endpoint_token="wrong-" + "b" * 30, inputs={"x": 1})
    assert bad_token.value.status_code == 401
    with pytest.raises(SdkException) as missing:
        sdk.trigger_endpoint("adder-ep", inputs={"y": 1})  # x is required: 400 before any execution
    assert missing.value.status_code == 400 and "'x' is required" in str(missing.value)

    # Executions: record, list per pipeline and per deployment, logs, one output.
    e = sdk.get_pipeline_execution(res["execution_id"])
    assert e["status"] == "Succeeded"
    assert {i["pipeline_input_name"]: i["value"] for i in e["inputs"]} == {"x": 5, "y": 10}
    listed = [x["execution_id"] for x in sdk.list_pipeline_executions("adder")]
    assert res["execution_id"] in listed and res2["execution_id"] in listed
    logs = [line["message"] for line in sdk.get_pipeline_execution_logs(res["execution_id"])]
    assert "adding 5 and 10" in logs and "to stderr" in logs
    assert any("logged 5" in m for m in logs)
    assert sdk.get_pipeline_execution_output(res["execution_id"], "total")["value"] == 15

    # A manual run, with its own inputs.
    run = sdk.run_pipeline("adder", inputs={"x": 40, "y": 2})
    assert run["outputs"] == {"total": 42}

    # The data store: upload, list, download; an output mapped there lands there.
    sdk.upload_data_store_object(io.BytesIO(b"hello store"), "inbox/greeting.txt")
    items = {i["path"] for i in sdk.list_data_store_objects("inbox")}
    assert "inbox/greeting.txt" in items
    out = io.BytesIO()
    sdk.download_data_store_object("inbox/greeting.txt", out)
    assert out.getvalue() == b"hello store"
    with pytest.raises(SdkException):
        sdk.download_data_store_object("inbox/absent.txt", io.BytesIO())
    stored = sdk.run_pipeline(
        "adder",
        inputs={"x": 1, "y": 1},
        outputs_mapping=[OutputDestination("total", datastore_path="results/sum.json")],
    )
    assert stored["execution_id"]
    result = io.BytesIO()
    sdk.download_data_store_object("results/sum.json", result)
    assert result.getvalue() == b"2"

    # The project's environment variables: a mapping source, and set in its executors.
    sdk.create_or_update_environment_variable("OFFSET", "1000")
    assert {"name": "OFFSET", "value": "1000"} in sdk.list_environment_variables()
    from_env = sdk.run_pipeline(
        "adder",
        inputs={"x": 1},
        inputs_mapping=[
            InputSource("x", endpoint_input_name="x"),
            InputSource("y", environment_variable_name="OFFSET"),
        ],
    )
    assert from_env["outputs"] == {"total": 1001}
    sdk.delete_environment_variable("OFFSET")

    # Update: disable (triggers refused), re-enable with a new default.
    upd = sdk.update_deployment("adder-ep", is_enabled=False)
    assert upd["status"] == "disabled" and upd["is_enabled"] is False
    with pytest.raises(SdkException) as disabled:
        sdk.trigger_endpoint("adder-ep", inputs={"x": 1})
    assert disabled.value.status_code == 409
    upd = sdk.update_deployment(
        "adder-ep",
        is_enabled=True,
        inputs_mapping=[InputSource("x", endpoint_input_name="x"), InputSource("y", constant_value=100)],
    )
    assert upd["status"] == "up"
    assert sdk.trigger_endpoint("adder-ep", inputs={"x": 1})["outputs"] == {"total": 101}

    # Delete: the deployment, then the pipeline.
    assert sdk.delete_deployment("adder-ep")["name"] == "adder-ep"
    assert all(x["name"] != "adder-ep" for x in sdk.list_deployments())
    with pytest.raises(SdkException) as gone:
        sdk.get_deployment("adder-ep")
    assert gone.value.status_code == 404
    sdk.delete_pipeline("adder")
    assert all(i["pipeline_name"] != "adder" for i in sdk.list_pipelines())


def test_a_periodic_deployment_fires_on_the_local_scheduler(
    sdk: CraftAiSdk, source: Path, pipeline_platform: RunningPlatform
) -> None:
    make_pipeline(sdk, source, "ticker", "tick", [], [Output("at", "number")])
    with pytest.raises(SdkException) as invalid:
        sdk.create_deployment("ticker", "ticker-bad", execution_rule="periodic", schedule="61 * * * *")
    assert invalid.value.status_code == 400
    d = sdk.create_deployment("ticker", "ticker-cron", execution_rule="periodic", schedule="*/2 * * * *")
    assert d["execution_rule"] == "periodic" and d["schedule"] == "*/2 * * * *"
    scheduler = boto3.client(
        "scheduler",
        endpoint_url=pipeline_platform.aws_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    schedules = scheduler.list_schedules(GroupName="modelfleet-pipelines")["Schedules"]
    assert any(s["Name"].endswith("--ticker-cron") for s in schedules)
    # Every two CRON minutes: every two seconds on the injected 60x clock.
    fired = wait_for(
        "two periodic executions",
        lambda: (lambda ex: ex if sum(e["status"] == "Succeeded" for e in ex) >= 2 else None)(
            sdk.list_pipeline_executions("ticker")
        ),
        timeout=30,
    )
    assert all(e["trigger"] == "periodic" and e["deployment_name"] == "ticker-cron" for e in fired)
    upd = sdk.update_deployment("ticker-cron", schedule="0 3 * * *")
    assert upd["schedule"] == "0 3 * * *" and upd["human_readable_schedule"] == "every day at 03:00 UTC"
    stored = scheduler.get_schedule(Name="default--ticker-cron", GroupName="modelfleet-pipelines")
    assert stored["ScheduleExpression"] == "cron(0 3 * * ? *)"
    with pytest.raises(SdkException) as bad_update:
        sdk.update_deployment("ticker-cron", schedule="every day")
    assert bad_update.value.status_code == 400
    upd = sdk.update_deployment("ticker-cron", is_enabled=False)
    assert upd["status"] == "disabled"
    assert (
        scheduler.get_schedule(Name="default--ticker-cron", GroupName="modelfleet-pipelines")["State"]
        == "DISABLED"
    )
    sdk.delete_deployment("ticker-cron")
    sdk.delete_pipeline("ticker")


def test_queue_runs_in_order_and_retries_a_failure_after_the_next(
    sdk: CraftAiSdk, source: Path, tmp_path: Path
) -> None:
    make_pipeline(
        sdk,
        source,
        "queued",
        "journal",
        [
            Input("tag", "string"),
            Input("journal_path", "string"),
            Input("gate_path", "string", is_required=False),
            Input("fail_first", "boolean", is_required=False),
        ],
        [Output("tag", "string")],
    )
    sdk.create_deployment("queued", "queued-ep", execution_rule="endpoint", mode="low_latency")
    journal, gate = tmp_path / "journal.txt", tmp_path / "gate"
    common = {"journal_path": str(journal)}
    first = sdk.trigger_endpoint(
        "queued-ep", inputs={"tag": "a", "gate_path": str(gate), **common}, wait_for_completion=False
    )
    wait_for("the first execution to start", lambda: journal.exists(), timeout=20)
    # Its outputs are long-polled: held, then a 307 back to the same URL while it runs.
    auth = {"Authorization": f"Bearer {sdk._access_token}"}
    outputs_url = f"{sdk.base_environment_api_url}/executions/{first['execution_id']}/outputs"
    held = httpx.get(
        outputs_url, params={"wait_for_completion": "true"}, headers=auth, follow_redirects=False
    )
    assert held.status_code == 307 and held.json()["status"] == "Running"
    assert held.headers["location"].endswith(
        f"/executions/{first['execution_id']}/outputs?wait_for_completion=true"
    )
    rest = [
        sdk.trigger_endpoint(
            "queued-ep", inputs={"tag": t, "fail_first": t == "b", **common}, wait_for_completion=False
        )
        for t in ("b", "c", "d")
    ]
    gate.touch()
    ids = [first["execution_id"]] + [r["execution_id"] for r in rest]
    wait_for(
        "every queued execution to end",
        lambda: all(sdk.get_pipeline_execution(i)["status"] in ("Succeeded", "Failed") for i in ids),
        timeout=30,
    )
    # FIFO, one at a time; b failed, c (the next) started, then b was retried before d (the seed).
    assert journal.read_text().split() == ["a", "b", "c", "b", "d"]
    b = sdk.get_pipeline_execution(ids[1])
    assert b["status"] == "Succeeded" and b["attempts"] == 2
    assert any("retrying" in line["message"] for line in sdk.get_pipeline_execution_logs(ids[1]))
    # Listed per deployment too, newest first.
    auth = {"Authorization": f"Bearer {sdk._access_token}"}
    per_deployment = httpx.get(
        f"{sdk.base_environment_api_url}/deployments/queued-ep/executions", headers=auth
    )
    assert [e["execution_id"] for e in per_deployment.json()] == ids[::-1]
    sdk.delete_pipeline("queued", force_deployments_deletion=True)


def test_parallel_runs_four_at_once_with_separate_logs(sdk: CraftAiSdk, source: Path) -> None:
    make_pipeline(
        sdk,
        source,
        "para",
        "overlap",
        [Input("tag", "string")],
        [Output("tag", "string"), Output("start", "number"), Output("end", "number")],
    )
    sdk.create_deployment(
        "para",
        "para-ep",
        execution_rule="endpoint",
        mode="low_latency",
        enable_parallel_executions=True,
        max_parallel_executions_per_pod=4,
    )
    tags = [f"job{i}" for i in range(4)]
    ids = [
        sdk.trigger_endpoint("para-ep", inputs={"tag": t}, wait_for_completion=False)["execution_id"]
        for t in tags
    ]
    results = {
        t: sdk.retrieve_endpoint_results("para-ep", i)["outputs"] for t, i in zip(tags, ids, strict=True)
    }
    # All four were running at one moment: the latest start is before the earliest end.
    assert max(r["start"] for r in results.values()) < min(r["end"] for r in results.values())
    for tag, execution_id in zip(tags, ids, strict=True):
        messages = [line["message"] for line in sdk.get_pipeline_execution_logs(execution_id)]
        assert sum(m.startswith(f"{tag} round") for m in messages) == 20
        assert sum(f"{tag} logged" in m for m in messages) == 20
        others = [t for t in tags if t != tag]
        assert not any(o in m for m in messages for o in others), f"{tag}'s log has another's lines"
    sdk.delete_pipeline("para", force_deployments_deletion=True)


def test_elastic_wakes_from_standby(sdk: CraftAiSdk, source: Path) -> None:
    make_pipeline(
        sdk,
        source,
        "stretchy",
        "add",
        [Input("x", "number"), Input("y", "number")],
        [Output("total", "number")],
    )
    d = sdk.create_deployment("stretchy", "stretchy-ep", execution_rule="endpoint", mode="elastic")
    assert d["status"] == "standby"
    assert sdk.trigger_endpoint("stretchy-ep", inputs={"x": 1, "y": 1})["outputs"] == {"total": 2}
    assert sdk.get_deployment("stretchy-ep")["status"] == "up"
    wait_for(
        "stand-by after idling", lambda: sdk.get_deployment("stretchy-ep")["status"] == "standby", timeout=20
    )
    # The next trigger waits for a cold start instead of failing.
    assert sdk.trigger_endpoint("stretchy-ep", inputs={"x": 2, "y": 3})["outputs"] == {"total": 5}
    sdk.delete_pipeline("stretchy", force_deployments_deletion=True)


def test_an_execution_over_its_ram_request_fails_and_the_deployment_goes_on(
    sdk: CraftAiSdk, source: Path
) -> None:
    make_pipeline(sdk, source, "hungry", "hog", [Input("megabytes", "number")], [Output("n", "number")])
    sdk.create_deployment(
        "hungry", "hungry-ep", execution_rule="endpoint", mode="low_latency", ram_request="150Mi"
    )
    started = sdk.trigger_endpoint("hungry-ep", inputs={"megabytes": 400}, wait_for_completion=False)
    ended = wait_for(
        "the execution to be stopped",
        lambda: (lambda e: e if e["status"] == "Failed" else None)(
            sdk.get_pipeline_execution(started["execution_id"])
        ),
        timeout=30,
    )
    assert "out of memory" in ended["error"] and "ram_request of 150 MiB" in ended["error"]
    # The deployment (and the platform) keep serving, in a fresh executor process.
    assert sdk.trigger_endpoint("hungry-ep", inputs={"megabytes": 1})["outputs"] == {"n": 1024 * 1024}
    sdk.delete_pipeline("hungry", force_deployments_deletion=True)


def test_an_archive_with_a_path_traversal_is_refused(
    sdk: CraftAiSdk, pipeline_platform: RunningPlatform
) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("src/main.py", b"def f():\n    return {}\n"), ("../../escape.py", b"x = 1\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    sdk.list_pipelines()  # makes sure the client holds a fresh access token
    token = sdk._access_token
    r = httpx.post(
        f"{pipeline_platform.url}/mlops/api/v1/pipelines",
        headers={"Authorization": f"Bearer {token}"},
        data={"pipeline_name": "evil", "function_path": "src/main.py", "function_name": "f"},
        files={"step_file": ("step.tar.gz", buf.getvalue(), "application/gzip")},
    )
    assert r.status_code == 400, r.text
    assert "escape.py" in r.json()["message"]
    assert all(i["pipeline_name"] != "evil" for i in sdk.list_pipelines())


def test_a_pipeline_that_cannot_run_says_why(sdk: CraftAiSdk, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "requirements.txt").write_text("")
    (tmp_path / "src" / "main.py").write_text("def f(:\n    pass\n")
    with pytest.raises(SdkException) as broken:
        make_pipeline(sdk, tmp_path, "broken", "f", [], [])
    assert broken.value.name == "CreationFailed"
    p = sdk.get_pipeline("broken")
    assert p["creation_info"]["status"] == "creation_failed"
    assert "syntax error in src/main.py line 1" in p["creation_info"]["reason"]
    (tmp_path / "src" / "main.py").write_text("def g():\n    return {}\n")
    with pytest.raises(SdkException):
        make_pipeline(sdk, tmp_path, "nameless", "f", [], [])
    assert "defines no function named 'f'" in sdk.get_pipeline("nameless")["creation_info"]["reason"]
    with pytest.raises(SdkException) as not_ready:
        sdk.create_deployment("nameless", "nameless-ep", execution_rule="endpoint")
    assert not_ready.value.status_code == 400
    (tmp_path / "requirements.txt").write_text("surely-not-installed-package==9.9\n")
    with pytest.raises(SdkException):
        make_pipeline(sdk, tmp_path, "needy", "g", [], [])
    assert "not installed" in sdk.get_pipeline("needy")["creation_info"]["reason"]
    for name in ("broken", "nameless", "needy"):
        sdk.delete_pipeline(name)


def test_a_low_latency_deployment_whose_function_cannot_import_fails_with_the_reason(
    sdk: CraftAiSdk, tmp_path: Path
) -> None:
    (tmp_path / "requirements.txt").write_text("")
    (tmp_path / "main.py").write_text("import module_that_is_nowhere\n\ndef f():\n    return {}\n")
    make_pipeline_at(sdk, tmp_path, "unimportable", "main.py", "f")
    with pytest.raises(SdkException) as failed:
        sdk.create_deployment(
            "unimportable", "unimportable-ep", execution_rule="endpoint", mode="low_latency"
        )
    assert failed.value.name == "CreationFailedException"
    d = sdk.get_deployment("unimportable-ep")
    assert d["status"] == "creation_failed" and "module_that_is_nowhere" in d["reason"]
    with pytest.raises(SdkException) as refused:
        sdk.trigger_endpoint("unimportable-ep", inputs={})
    assert refused.value.status_code == 409
    sdk.delete_pipeline("unimportable", force_deployments_deletion=True)


def make_pipeline_at(sdk: CraftAiSdk, folder: Path, name: str, path: str, function: str) -> dict[str, Any]:
    return sdk.create_pipeline(
        name, function_path=path, function_name=function, container_config={"local_folder": str(folder)}
    )


def test_access_tokens_come_from_api_keys_and_a_revoked_key_stops_at_its_next_refresh(
    pipeline_platform: RunningPlatform,
) -> None:
    url = f"{pipeline_platform.url}/mlops"
    with pipeline_platform.client() as native:
        created = native.request("POST", "/api/v1/keys", json={"roles": ["manage"], "name": "sdk"})
    key, key_id = created["api_key"], created["key"]["key_id"]
    sdk = CraftAiSdk(sdk_token=key, environment_url=url, control_url=url, verbose_log=False)
    sdk.list_pipelines()
    claims = jwt.decode(sdk._access_token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] > 120  # the client would refresh before every call otherwise
    assert claims["sub"] == key_id
    # A forged token (wrong signature) is refused.
    forged = jwt.encode(
        {**claims, "project_id": "other"}, "not-the-platform-secret-" + "x" * 24, algorithm="HS256"
    )
    r = httpx.get(f"{url}/api/v1/pipelines", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401 and r.json()["name"] == "Unauthorized"
    with pipeline_platform.client() as native:
        native.request("DELETE", f"/api/v1/keys/{key_id}")
    sdk.list_pipelines()  # the access token still holds until it is refreshed
    sdk._clear_access_token()
    with pytest.raises(SdkException) as revoked:
        sdk.list_pipelines()
    assert revoked.value.status_code == 401 and "revoked" in str(revoked.value)
    bogus = httpx.post(f"{url}/api/v1/auth/refresh", json={"refresh_token": "no-colon"})
    assert bogus.status_code == 401


def test_ram_requests_are_admitted_against_the_node(sdk: CraftAiSdk, source: Path) -> None:
    make_pipeline(sdk, source, "sized", "add", [Input("x", "number")], [Output("total", "number")])
    total_mib = psutil.virtual_memory().total // 2**20
    with pytest.raises(SdkException) as too_big:
        sdk.create_deployment(
            "sized", "sized-huge", execution_rule="endpoint", ram_request=f"{total_mib + 1024}Mi"
        )
    assert too_big.value.status_code == 400 and "more than the node's memory" in str(too_big.value)
    share = f"{int(total_mib * 0.6)}Mi"
    first = sdk.create_deployment("sized", "sized-a", execution_rule="endpoint", ram_request=share)
    assert first["warnings"] == []
    second = sdk.create_deployment("sized", "sized-b", execution_rule="endpoint", ram_request=share)
    assert second["status"] == "standby"  # accepted, with a warning
    assert "over the node's" in second["warnings"][0]
    sdk.delete_pipeline("sized", force_deployments_deletion=True)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("POST", "/pipelines", {"json": {"pipeline_name": "x"}}, 400),
        (
            "POST",
            "/pipelines",
            {"content": b"\xff\xfe", "headers": {"content-type": "multipart/form-data"}},
            400,
        ),
        ("POST", "/endpoints", {"content": b"{not json"}, 400),
        ("POST", "/endpoints", {"json": {"pipeline_name": "p", "name": "d", "surprise": 1}}, 400),
        ("POST", "/endpoints", {"json": {"pipeline_name": "p", "name": "d", "ram_request": "lots"}}, 400),
        ("POST", "/endpoints", {"json": {"pipeline_name": "../p", "name": "d"}}, 400),
        (
            "POST",
            "/periodic-deployment",
            {"json": {"pipeline_name": "nope", "name": "d", "schedule": "* *"}},
            404,
        ),
        ("PATCH", "/deployments/nope", {"json": {"is_enabled": "maybe"}}, 400),
        ("POST", "/deployments/nope/executions", {"json": [1, 2]}, 400),
        ("GET", "/executions/nope", {}, 404),
        ("POST", "/executions/nope/logs", {"json": {"limit": -1}}, 400),
        ("GET", "/data-store/upload", {"params": {"path_to_object": "../../etc/passwd"}}, 400),
        ("POST", "/data-store/download", {"data": {"path_to_object": ""}}, 400),
        ("GET", "/no/such/route", {}, 404),
    ],
)
def test_bad_input_is_a_4xx_in_the_clients_format(
    sdk: CraftAiSdk, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    sdk.list_pipelines()  # a fresh access token
    headers = {"Authorization": f"Bearer {sdk._access_token}", **kwargs.pop("headers", {})}
    r = httpx.request(method, f"{sdk.base_environment_api_url}{path}", headers=headers, **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) >= {"message", "name"} and body["message"]


def test_after_a_crash_the_platform_warms_its_deployments_and_fails_the_lost_executions(
    pipeline_platform: RunningPlatform, sdk: CraftAiSdk, source: Path, tmp_path: Path
) -> None:
    """Last in this module: it kills the module's platform (kill -9) and starts it again."""
    make_pipeline(
        sdk, source, "durable", "journal",
        [Input("tag", "string"), Input("journal_path", "string"), Input("gate_path", "string")],
        [Output("tag", "string")],
    )  # fmt: skip
    sdk.create_deployment("durable", "durable-ep", execution_rule="endpoint", mode="low_latency")
    journal, gate = tmp_path / "journal.txt", tmp_path / "gate"
    inputs = {"journal_path": str(journal), "gate_path": str(gate)}
    lost = sdk.trigger_endpoint("durable-ep", inputs={"tag": "lost", **inputs}, wait_for_completion=False)
    wait_for("the execution to start", lambda: journal.exists(), timeout=20)
    pipeline_platform.stop(signal.SIGKILL)
    again = start_platform(pipeline_platform.home, extra_env=PIPELINE_ENV, nodes=0)
    try:
        url = f"{again.url}/mlops"
        sdk2 = CraftAiSdk(sdk_token=ADMIN_KEY, environment_url=url, control_url=url, verbose_log=False)
        record = wait_for(
            "the lost execution to be failed",
            lambda: (lambda e: e if e["status"] == "Failed" else None)(
                sdk2.get_pipeline_execution(lost["execution_id"])
            ),
            timeout=30,
        )
        assert "restarted" in record["error"]
        assert sdk2.get_deployment("durable-ep", wait_for_completion=True)["status"] == "up"
        gate.touch()
        assert sdk2.trigger_endpoint("durable-ep", inputs={"tag": "after", **inputs})["outputs"] == {
            "tag": "after"
        }
    finally:
        again.stop()
