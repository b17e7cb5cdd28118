"""Start-up and deploy timings of the local platform, and inference latency through the gateway
versus the node directly (concurrency 1, keep-alive). Not the benchmark: `make bench` (issue 9)
will measure against raw onnxruntime and a plain FastAPI server.

    .venv/bin/python scripts/timings.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from modelfleet.client import Client
from modelfleet.examples.digits import build_example, sample_row

KEY = "mfk_timings:timings-secret-0123456789"


def p50_ms(host: str, port: int, path: str, body: bytes, headers: dict[str, str], n: int) -> float:
    conn = http.client.HTTPConnection(host, port)
    for _ in range(min(200, n)):
        conn.request("POST", path, body, headers)
        conn.getresponse().read()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        conn.request("POST", path, body, headers)
        r = conn.getresponse()
        r.read()
        samples.append(time.perf_counter() - t)
        if r.status != 200:
            raise RuntimeError(f"{path}: HTTP {r.status}")
    samples.sort()
    return samples[n // 2] * 1e3


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--port", type=int, default=18599)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mf-timings-") as tmp:
        env = dict(os.environ, MODELFLEET_BOOTSTRAP_API_KEY=KEY)
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelfleet",
                "up",
                "--home",
                f"{tmp}/home",
                "--port",
                str(args.port),
                "--no-example",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        try:
            with Client(f"http://127.0.0.1:{args.port}", KEY) as c:
                while True:
                    try:
                        nodes = c.request("GET", "/api/v1/nodes")["nodes"]
                        if sum(n["state"] == "ready" for n in nodes) == 2:
                            break
                    except Exception:
                        if proc.poll() is not None:
                            raise RuntimeError("the platform exited") from None
                    time.sleep(0.02)
                started = time.monotonic() - t0
                path = build_example(Path(tmp))
                t1 = time.monotonic()
                model = c.register_model(path, name="digits", format="onnx")
                registered = time.monotonic() - t1
                t2 = time.monotonic()
                c.deploy("digits", model_id=model["model_id"])
                d = c.wait_for_state("digits", "started", interval=0.005)
                deployed = time.monotonic() - t2
                uid = c.events("digits")[0]["aggregate_id"]
                node_url = {n["node_id"]: n["url"] for n in c.request("GET", "/api/v1/nodes")["nodes"]}[
                    next(iter(d["routing_table"]))
                ]
            body = json.dumps(
                {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": sample_row()}]}
            ).encode()
            json_h = {"content-type": "application/json"}
            host, port = node_url.removeprefix("http://").split(":")
            node = p50_ms(host, int(port), f"/infer/{uid}/1", body, json_h, args.requests)
            gateway = p50_ms(
                "127.0.0.1",
                args.port,
                "/v2/models/digits/infer",
                body,
                {**json_h, "authorization": f"Bearer {KEY}"},
                args.requests,
            )
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    print(f"platform start to 2 nodes ready     {started:8.2f} s")
    print(f"register + upload + commit (digits) {registered * 1e3:8.0f} ms")
    print(f"deploy to started                   {deployed * 1e3:8.0f} ms")
    print(f"p50, 1x64 OIP JSON, node directly   {node:8.2f} ms")
    print(f"p50, 1x64 OIP JSON, via gateway     {gateway:8.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
