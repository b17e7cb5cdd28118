"""Smoke tests of `make bench`'s pieces: the modules import, wrk's report is read right (a run with
non-2xx answers is a failed run), and the peer server answers OIP v2 JSON like modelfleet does."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper

from bench.load import LoadResult, lua_script, parse_wrk
from bench.models import oip_body
from bench.peer_server import create_app
from bench.phases import ServeConfig, batch_counters
from bench.rows import MODELS, latency_rows, throughput_rows
from modelfleet.worker.batcher import SHARE_WAIT_FRACTION

WRK_OK = """Running 1s test @ http://127.0.0.1:47429/v2/models/digits/infer
  1 threads and 2 connections
  Latency Distribution
     50%    1.31ms
     75%    1.50ms
     90%    1.74ms
     99%    3.49ms
  1472 requests in 1.00s, 0.98MB read
Requests/sec:   1471.15
Transfer/sec:      0.98MB
BENCH_JSON {"requests":1472,"duration_us":1000578,"p50_us":1312,"p90_us":1739,"p95_us":1983,\
"p99_us":3492,"connect":0,"read":0,"write":0,"status":0,"timeout":0}
"""

WRK_NON_2XX = """Running 1s test @ http://127.0.0.1:47429/v2/models/nope/infer
  Latency Distribution
     50%  789.00us
     75%    0.85ms
     90%    0.95ms
     99%    1.83s
  2450 requests in 1.00s, 394.90KB read
  Non-2xx or 3xx responses: 2450
Requests/sec:   2449.25
BENCH_JSON {"requests":2450,"duration_us":1000305,"p50_us":789,"p90_us":949,"p95_us":1049,\
"p99_us":1827,"connect":0,"read":0,"write":0,"status":2450,"timeout":0}
"""


@pytest.mark.parametrize(
    "module",
    [
        "bench",
        "bench.__main__",
        "bench.coldstart",
        "bench.load",
        "bench.models",
        "bench.peer",
        "bench.peer_server",
        "bench.phases",
        "bench.platform",
        "bench.raw",
        "bench.report",
        "bench.rows",
    ],
)
def test_bench_modules_import(module: str) -> None:
    importlib.import_module(module)


def test_a_clean_wrk_run_is_read_with_its_percentiles_and_rate() -> None:
    r = parse_wrk("digits c=2", 2, 1, 1.0, WRK_OK)
    assert r.ok
    assert (r.p50_ms, r.p90_ms, r.p99_ms, r.rps, r.requests) == (1.31, 1.74, 3.49, 1471.15, 1472)
    assert r.p95_ms == pytest.approx(1.983)


def test_a_wrk_run_with_non_2xx_answers_is_failed_and_units_are_converted() -> None:
    r = parse_wrk("nope c=2", 2, 1, 1.0, WRK_NON_2XX)
    assert not r.ok
    assert r.non_2xx == 2450
    assert r.p50_ms == pytest.approx(0.789)
    assert r.p99_ms == pytest.approx(1830.0)


def test_unreadable_wrk_output_is_a_failed_run() -> None:
    r = parse_wrk("x", 1, 1, 1.0, "wrk: connection refused\n")
    assert not r.ok and "unreadable" in r.error


def test_the_lua_script_quotes_paths_and_headers() -> None:
    script = lua_script(Path('/tmp/a "b"/body.json'), {"Authorization": "Bearer id:secret"})
    assert 'io.open("/tmp/a \\"b\\"/body.json", "rb")' in script
    assert 'wrk.headers["Authorization"] = "Bearer id:secret"' in script


def test_the_peer_answers_oip_v2_json_with_every_output(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"]), helper.make_node("Neg", ["x"], ["z"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 3]),
        ],
    )
    path = tmp_path / "m.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), path)
    client = TestClient(create_app({"m": path}))
    x = np.asarray([[1.5, -2.0, 0.25]], dtype=np.float32)
    json_h = {"content-type": "application/json"}
    r = client.post("/v2/models/m/infer", content=oip_body({"x": x}), headers=json_h)
    assert r.status_code == 200
    out = {o["name"]: o for o in r.json()["outputs"]}
    assert out["y"] == {"name": "y", "datatype": "FP32", "shape": [1, 3], "data": [1.5, -2.0, 0.25]}
    assert out["z"]["data"] == [-1.5, 2.0, -0.25]
    assert (
        client.post("/v2/models/other/infer", content=oip_body({"x": x}), headers=json_h).status_code == 404
    )


def test_the_token_input_digits_runs_the_same_mlp_on_padded_ids(tmp_path: Path) -> None:
    import onnxruntime as ort

    from bench.models import digits_for_ml, digits_model

    digits = digits_model(tmp_path)
    token_model = ort.InferenceSession(str(digits_for_ml(digits, tmp_path)))
    mlp = ort.InferenceSession(str(digits.path))
    ids = np.asarray([[2, 5, 1, 3]], dtype=np.int64)
    row = np.zeros((1, 64), dtype=np.float32)
    row[0, :4] = ids[0]
    got = token_model.run(["probabilities"], {"input_ids": ids})[0]
    want = mlp.run(["probabilities"], {"input": row})[0]
    assert got.shape == (1, 10)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def _run(label: str, p50: float, p95: float, rps: float) -> LoadResult:
    return LoadResult(label, 1, 1, 1.0, 100, rps, p50, p50, p95, p95, 0)


def test_batch_counters_read_the_runs_of_one_deployment_in_the_measured_window() -> None:
    before = {"m-1x2-on/1": {"batches": 2, "batched_requests": 5, "recent_runs": [[1, 1.0], [4, 9.0]]}}
    runs = [[1, 1.0], [4, 9.0], [16, 40.0], [16, 60.0], [8, 20.0]]
    after = {
        "m-1x2-on/1": {"batches": 5, "batched_requests": 45, "recent_runs": runs},
        "other/1": {"batches": 9, "batched_requests": 9, "recent_runs": [[1, 500.0]] * 9},
    }
    got = batch_counters(before, after, "m-1x2-on")
    assert got["batches"] == 3 and got["requests"] == 40 and got["average_batch"] == pytest.approx(40 / 3)
    assert got["batch_run_ms"] == pytest.approx(40.0)
    # over requests: 16 saw 40 ms, 16 saw 60 ms, 8 saw 20 ms -> the 95th percentile is 60 ms
    assert got["batch_run_p95_ms"] == pytest.approx(60.0)
    assert batch_counters(after, after, "m-1x2-on")["average_batch"] == 0.0


def test_rows_name_each_figure_s_shape_and_judge_the_gain_in_the_latency_shape() -> None:
    serve = ServeConfig()
    lat, thr = serve.latency_shape("minilm").label, serve.throughput.label
    assert (lat, thr, serve.latency_shape("digits").label) == ("1x2", "2x1", "2x1")
    peer = {"runs": {m: {"c1": _run("p", 5.0, 9.0, 200), "c16": _run("p", 80.0, 120.0, 200)} for m in MODELS}}
    formed_on = {"average_batch": 15.5, "batch_run_ms": 40.0, "batch_run_p95_ms": 50.0}
    formed_off = {"average_batch": 1.0, "batch_run_ms": 4.0, "batch_run_p95_ms": 5.0}
    mf: dict[str, Any] = {"throughput": {"off": {}, "on": {}}, "formed": {"off": {}, "on": {}}}
    for m in MODELS:
        keys = {f"{s.label}:c{n}" for n, s in serve.runs(m)}
        mf["throughput"]["off"][m] = {k: _run(k, 4.0, 8.0, 150) for k in keys}
        mf["throughput"]["on"][m] = {k: _run(k, 4.5, 54.0, 330) for k in keys}
        mf["formed"]["off"][m] = {k: formed_off for k in keys}
        mf["formed"]["on"][m] = {k: formed_on for k in keys}
    raw = {
        "digits": {"p50_ms": 0.01, "t1_p50_ms": 0.01},
        "minilm": {
            "p50_ms": 3.5,
            "t1_p50_ms": 6.0,
            "t2_p50_ms": 3.6,
            "1x2_batch_size": 16,
            "1x2_batch_p50_ms": 30.0,
            "1x2_rows_p50_ms": 57.6,
        },
    }
    rows = {r.figure: r for r in throughput_rows(raw, peer, mf, serve) + latency_rows(raw, peer, mf, serve)}
    assert rows["minilm c=1 p50 [1x2], batching off"].ratio == pytest.approx(4.0 / 5.0)
    assert rows["minilm c=16 req/s [2x1], batching on"].ok is True  # 330 vs 200 >= 1.5x
    gain = rows["minilm batching gain [1x2], c=16 req/s (on vs off)"]
    assert gain.ratio == pytest.approx(2.2) and gain.ok is True and "= 1.92x" in gain.note
    assert rows["minilm batching gain [2x1], c=16 req/s (on vs off)"].ok is None  # information
    bound = rows["minilm c=16 p95 [1x2], batching on (vs wait + one batch's run)"]
    # the share wait's cap (0.15 x the 40 ms average run = 6 ms) + the p95 run of 50 ms
    assert bound.ratio == pytest.approx(54.0 / (SHARE_WAIT_FRACTION * 40.0 + 50.0)) and bound.ok is True
