"""The load generator: wrk (C, epoll, keep-alive connections) at a fixed concurrency.

wrk is closed-loop: each of its `-c` connections sends the next request as soon as the previous
answer arrives, so `-c 1` measures latency and `-c 16` throughput at 16 requests in flight.
A Lua script sets the method, headers (including `Authorization: Bearer <key>`) and the body read
from a file. Figures are parsed from wrk's `--latency` report; the script's `done()` hook adds
p95 and the error counters as JSON. A run with any non-2xx answer or socket error is a failed
run, never a fast one.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

WRK_TIMEOUT = "10s"

LUA_TEMPLATE = """
wrk.method = "POST"
local f = assert(io.open({body_path}, "rb"))
wrk.body = f:read("*a")
f:close()
{headers}

function done(summary, latency, requests)
  io.write(string.format(
    "BENCH_JSON {{\\"requests\\":%d,\\"duration_us\\":%d,\\"p50_us\\":%d,\\"p90_us\\":%d," ..
    "\\"p95_us\\":%d,\\"p99_us\\":%d,\\"connect\\":%d,\\"read\\":%d,\\"write\\":%d," ..
    "\\"status\\":%d,\\"timeout\\":%d}}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(95), latency:percentile(99), summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout))
end
"""

UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


class WrkMissing(RuntimeError):
    pass


@dataclass
class LoadResult:
    """One wrk run. Latencies in milliseconds; `ok` is False if any request failed."""

    label: str
    connections: int
    threads: int
    duration_s: float
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: dict[str, int] = field(default_factory=dict)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.non_2xx == 0 and not any(self.socket_errors.values())

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise WrkMissing(
            "wrk is not installed: `make bench` installs it with `apt-get install -y wrk`; "
            "install it by hand (Debian/Ubuntu: apt-get install wrk) and run again"
        )
    return path


def lua_script(body_path: Path, headers: dict[str, str]) -> str:
    lines = "\n".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items())
    return LUA_TEMPLATE.format(body_path=json.dumps(str(body_path)), headers=lines)


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if m is None:
        raise ValueError(f"unreadable wrk latency {text!r}")
    return float(m.group(1)) * UNITS_MS[m.group(2)]


def parse_wrk(label: str, connections: int, threads: int, duration_s: float, out: str) -> LoadResult:
    """Read wrk's `--latency` report (p50/p90/p99, Requests/sec, Non-2xx) plus the done() JSON."""
    pct = {int(p): _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", out, re.MULTILINE)}
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.MULTILINE)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    extra = re.search(r"^BENCH_JSON (\{.*\})$", out, re.MULTILINE)
    if rps is None or extra is None or not {50, 90, 99} <= pct.keys():
        return LoadResult(
            label,
            connections,
            threads,
            duration_s,
            0,
            0.0,
            0,
            0,
            0,
            0,
            0,
            {},
            f"unreadable wrk output: {out}",
        )
    summary = json.loads(extra.group(1))
    socket_errors = {k: int(summary[k]) for k in ("connect", "read", "write", "timeout")}
    return LoadResult(
        label=label,
        connections=connections,
        threads=threads,
        duration_s=summary["duration_us"] / 1e6,
        requests=int(summary["requests"]),
        rps=float(rps.group(1)),
        p50_ms=pct[50],
        p90_ms=pct[90],
        p95_ms=summary["p95_us"] / 1e3,
        p99_ms=pct[99],
        non_2xx=int(non_2xx.group(1)) if non_2xx else int(summary["status"]),
        socket_errors=socket_errors,
    )


def run_wrk(
    label: str,
    url: str,
    body: bytes,
    headers: dict[str, str],
    connections: int,
    duration_s: int,
    warmup_s: int = 1,
) -> LoadResult:
    """Warm up for `warmup_s` (discarded), then measure for `duration_s` at `connections`.

    wrk takes whole seconds only.

    Threads: 1 for a single connection, else 2 (one per core; wrk is not the bottleneck at
    these rates, it needs a few microseconds of CPU per request).
    """
    threads = 1 if connections == 1 else 2
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        body_path = Path(tmp) / "body.json"
        body_path.write_bytes(body)
        script = Path(tmp) / "post.lua"
        script.write_text(lua_script(body_path, {"Content-Type": "application/json", **headers}))

        def wrk(seconds: int) -> str:
            cmd = [
                wrk_path(),
                "-t",
                str(threads),
                "-c",
                str(connections),
                "-d",
                f"{int(seconds)}s",
                "--timeout",
                WRK_TIMEOUT,
                "--latency",
                "-s",
                str(script),
                url,
            ]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
            if done.returncode != 0:
                raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
            return done.stdout

        if warmup_s > 0:
            wrk(warmup_s)
        return parse_wrk(label, connections, threads, duration_s, wrk(duration_s))
