"""Start-up and deploy timings of the local platform, and inference latency through the gateway
versus the node directly (concurrency 1, keep-alive, Python's http.client: its own ~0.1 ms is
included). With `wrk` installed, also the gateway's p50 at concurrency 1 and requests/s at 16
(the deployment batches: max_batch_size 32, no delay). Not the benchmark: `make bench`
measures against raw onnxruntime and a plain FastAPI server.

    .venv/bin/python scripts/timings.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
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


def wrk(
    url: str, body: bytes, headers: dict[str, str], connections: int, seconds: int = 5
) -> tuple[float, float]:
    """(p50 ms, requests/s) of a wrk run; (nan, nan) without wrk."""
    path = shutil.which("wrk")
    if path is None:
        return float("nan"), float("nan")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "body").write_bytes(body)
        lines = ['wrk.method = "POST"', f'wrk.body = io.open("{tmp}/body", "rb"):read("*a")']
        lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
        (Path(tmp) / "s.lua").write_text("\n".join(lines))
        out = subprocess.run(
            [path, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", f"{tmp}/s.lua", url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk got errors from {url}:\n{out}")
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert p50 and rps, out
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p50.group(2)]
    return float(p50.group(1)) * scale, float(rps.group(1))


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
            auth_h = {**json_h, "authorization": f"Bearer {KEY}"}
            gateway = p50_ms("127.0.0.1", args.port, "/v2/models/digits/infer", body, auth_h, args.requests)
            url = f"http://127.0.0.1:{args.port}/v2/models/digits/infer"
            wrk_p50, _ = wrk(url, body, auth_h, 1)
            _, wrk_rps = wrk(url, body, auth_h, 16)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    print(f"platform start to 2 nodes ready     {started:8.2f} s")
    print(f"register + upload + commit (digits) {registered * 1e3:8.0f} ms")
    print(f"deploy to started                   {deployed * 1e3:8.0f} ms")
    print(f"p50, 1x64 OIP JSON, node directly   {node:8.2f} ms")
    print(f"p50, 1x64 OIP JSON, via gateway     {gateway:8.2f} ms")
    print(f"p50 via gateway, wrk -c1            {wrk_p50:8.2f} ms")
    print(f"req/s via gateway, wrk -c16         {wrk_rps:8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
