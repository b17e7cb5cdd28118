"""Helpers of the edge tests and the fleet simulation: tiny ONNX models whose output tells which
version served, a TCP proxy a test can cut (the device's network), and a real agent process."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
from onnx import TensorProto, helper

from modelfleet.local.launcher import wait_for


def scale_model(path: Path, factor: float, poisoned: bool = False, pad_bytes: int = 0) -> Path:
    """y = x * factor for x: FP32[-1, 4]. `poisoned`: y = x * factor / x, NaN on the health check's
    zero input (it loads, but must never be activated). `pad_bytes` of unused weights make the file
    big enough for a download to be cut in the middle."""
    k = helper.make_tensor("k", TensorProto.FLOAT, [1], [factor])
    nodes = [helper.make_node("Mul", ["x", "k"], ["y" if not poisoned else "t"])]
    if poisoned:
        nodes.append(helper.make_node("Div", ["t", "x"], ["y"]))
    graph = helper.make_graph(
        nodes,
        "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 4])],
        initializer=[k, *_padding(pad_bytes)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.doc_string = f"scale {factor} {'poisoned' if poisoned else ''}"
    onnx.save(model, str(path))
    return path


def oip_body(x: np.ndarray) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}


def _padding(pad_bytes: int) -> list[onnx.TensorProto]:
    if pad_bytes <= 0:
        return []
    values = np.random.default_rng(pad_bytes).random(pad_bytes // 4, dtype=np.float32)
    return [helper.make_tensor("pad", TensorProto.FLOAT, [values.size], values.tobytes(), raw=True)]


class TcpProxy:
    """127.0.0.1:<port> -> upstream. `cut()` closes the listener and every connection (the device
    is offline); `restore()` listens on the same port again."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._up = (upstream_host, upstream_port)
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.port = 0
        self.restore()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def restore(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        self.port = s.getsockname()[1]
        self._listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, set()
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._up, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._conns |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


class AgentProcess:
    """`python -m edge_agent run` on port 0, with the test's time scale."""

    def __init__(
        self,
        data_dir: Path,
        control_url: str,
        token: str | None = None,
        name: str = "",
        ca_file: str | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.control_url = control_url
        self.token = token
        self.name = name
        self.ca_file = ca_file
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self, timeout: float = 30.0) -> AgentProcess:
        run_file = self.data_dir / "agent.json"
        run_file.unlink(missing_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            sys.executable,
            "-m",
            "edge_agent",
            "run",
            "--data-dir",
            str(self.data_dir),
            "--control-url",
            self.control_url,
            "--port",
            "0",
            "--poll-wait",
            "2",
            "--heartbeat-interval",
            "0.5",
            "--backoff-cap",
            "1",
            "--name",
            self.name,
        ]
        if self.token:
            args += ["--token", self.token]
        if self.ca_file:
            args += ["--ca-file", self.ca_file]
        log = (self.data_dir / "agent.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
        import json

        def bound() -> int | None:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the agent exited:\n{self.log()[-3000:]}")
            return json.loads(run_file.read_text())["port"] if run_file.exists() else None

        self.port = wait_for("the agent to listen", bound, timeout=timeout)
        return self

    def log(self) -> str:
        path = self.data_dir / "agent.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = httpx.get(f"{self.url}/_agent", timeout=5).json()
        return doc

    def infer(self, name: str, x: np.ndarray) -> np.ndarray:
        r = httpx.post(f"{self.url}/v2/models/{name}/infer", json=oip_body(x), timeout=10)
        r.raise_for_status()
        out = r.json()["outputs"][0]
        return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
