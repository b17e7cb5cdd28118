"""Smoke tests of `make bench`'s pieces: the modules import, wrk's report is read right (a run with
non-2xx answers is a failed run), and the peer server answers OIP v2 JSON like modelfleet does."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper

from bench.load import lua_script, parse_wrk
from bench.models import oip_body
from bench.peer_server import create_app

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
