"""Rows about what users hand us: the malicious model corpus (7), archive traversal and bombs (8),
and SSRF payloads (9). Each is refused before any I/O or loading, and a canary proves nothing ran."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

from faults import corpus
from faults.result import Context, RowResult
from modelfleet.adapters.outbound_http import fetch
from modelfleet.client import ApiError
from modelfleet.core.url_guard import UrlPolicy, UrlRefused, check_url
from modelfleet.runtime.archives import ArchiveLimits, extract_archive
from modelfleet.runtime.errors import ArchiveRefused

SIGNATURE = {
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}],
    "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}],
}


def malicious_models(ctx: Context) -> RowResult:
    """Row 7: malicious TorchScript-shaped and torch.export uploads deploy to `failed`, naming the
    refusal; the canary their payload would create never appears; the nodes keep serving."""
    d = ctx.workdir / "corpus"
    d.mkdir(exist_ok=True)
    canary = d / "canary"
    files = {
        "evil-reduce": corpus.write_torchscript_shaped(
            d / "reduce.pt", corpus.reduce_pickle(canary, shell=True)
        ),
        "evil-reduce-p4": corpus.write_malicious_torchscript(d / "reduce4.pt", canary, protocol=4),
        "evil-from-file": corpus.write_from_file_torchscript(d / "from_file.pt", canary),
        "evil-raw-pickle": corpus.write_raw_pickle(d / "raw.pt", canary),
        "evil-checkpoint": corpus.write_torch_save_checkpoint(d / "ckpt.pt", canary),
        "evil-prefixed": corpus.write_prefixed_torchscript(d / "prefixed.pt", canary),
    }
    # torch.export archives whose pickles or program strings torch.export.load would run.
    pt2_files = {
        "evil-pt2-sample-inputs": corpus.write_torch_export_evil_sample_inputs(d / "sample.pt2", canary),
        "evil-pt2-pickled-weight": corpus.write_torch_export_pickled_weight(d / "weight.pt2", canary),
        "evil-pt2-sympy-eval": corpus.write_torch_export_sympy_eval(d / "sympy.pt2", canary),
    }
    result = RowResult(sent=len(files) + len(pt2_files))
    reasons = []
    with ctx.platform.client() as c:
        for name, path in files.items():
            model = c.register_model(path, name=name, format="torchscript", signature=SIGNATURE)
            c.deploy(name, model_id=model["model_id"])
        for name, path in pt2_files.items():
            model = c.register_model(path, name=name, format="torch_export", signature=SIGNATURE)
            c.deploy(name, model_id=model["model_id"])
        for name in [*files, *pt2_files]:
            failed = c.wait_for_state(name, "failed", "started", timeout=60)
            result.acknowledged += 1
            if failed["state"] == "failed" and failed["reason"]:
                result.ok += 1
                reasons.append(failed["reason"][:40])
            with contextlib.suppress(ApiError):
                c.delete(name, force=True)
        nodes = c.request("GET", "/api/v1/nodes")["nodes"]
    if canary.exists():
        result.duplicated += 1  # code ran that must never run: counted against the row
        result.notes = "CANARY CREATED: a payload ran"
    down = [n["node_id"] for n in nodes if n["state"] != "ready"]
    result.lost += len(down)
    result.notes = result.notes or f"all refused before load, canary absent, nodes up; e.g. {reasons[0]!r}"
    return result


def archives(ctx: Context) -> RowResult:
    """Row 8: archives with traversal, links, devices and bombs are refused; nothing lands outside."""
    d = ctx.workdir / "archives"
    d.mkdir(exist_ok=True)
    limits = ArchiveLimits(max_member_bytes=64 * 1024**2, max_total_bytes=128 * 1024**2)
    cases = {
        "tar ../": corpus.write_tar_traversal(d / "t1.tar"),
        "tar absolute": corpus.write_tar_traversal(d / "t2.tar", name="/tmp/escaped.txt"),
        "tar symlink /etc": corpus.write_tar_link(d / "t3.tar"),
        "tar device": corpus.write_tar_device(d / "t4.tar"),
        "tar.gz bomb": corpus.write_tar_gz_bomb(d / "t5.tar.gz", ctx.scaled(1024**3, 256 * 1024**2)),
        "tar many members": corpus.write_tar_many_members(d / "t6.tar", limits.max_members + 1),
        "zip slip": corpus.write_zip(d / "z1.zip", {"../../escaped.txt": b"pwned"}),
        "zip symlink": corpus.write_zip(d / "z2.zip", {"a": b"x"}, symlinks={"etc": "/etc"}),
        "zip bomb": corpus.write_zip_bomb(d / "z3.zip", ctx.scaled(1024**3, 256 * 1024**2)),
        "zip overlapping": corpus.write_overlapping_zip(d / "z4.zip"),
        "zip lying size": corpus.write_zip_lying_size(d / "z5.zip"),
    }
    result = RowResult(sent=len(cases))
    escaped = []
    for i, (name, path) in enumerate(cases.items()):
        dest = d / f"out-{i}"
        try:
            extract_archive(path, dest, limits)
        except ArchiveRefused:
            result.ok += 1
        result.acknowledged += 1
        if dest.exists():
            escaped.append(name)  # a refused archive must leave nothing behind
    outside = [p for p in (d.parent / "escaped.txt", Path("/tmp/escaped.txt")) if p.exists()]
    result.lost = len(escaped) + len(outside)
    result.notes = (
        f"refused {result.ok}/{len(cases)}; left behind: {escaped or 'none'}; outside: {outside or 'none'}"
    )
    return result


class _Redirect(http.server.BaseHTTPRequestHandler):
    target = ""
    hits: list[str] = []

    def do_GET(self) -> None:
        _Redirect.hits.append(self.path)
        if self.path.startswith("/internal"):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"secret")
            return
        self.send_response(302)
        self.send_header("location", _Redirect.target + self.path.removeprefix("/go"))
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@contextlib.contextmanager
def _redirector() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def ssrf(ctx: Context) -> RowResult:
    """Row 9: URLs aimed at loopback, private, link-local and metadata addresses, in every spelling,
    directly and after a redirect, are refused before any request reaches them."""
    policy = UrlPolicy(schemes=frozenset({"https", "http", "s3"}), s3_buckets=frozenset({"models"}))

    def public_dns(host: str) -> list[str]:
        return {"internal.example": ["10.0.0.7"], "rebind.example": ["93.184.216.34", "127.0.0.1"]}.get(
            host, ["93.184.216.34"]
        )

    payloads = [
        "http://127.0.0.1/", "http://localhost/", "http://2130706433/", "http://0x7f.1/", "http://0177.0.0.1/",
        "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal/", "http://10.0.0.1/", "http://192.168.1.1/", "http://172.16.0.1/",
        "http://[fe80::1]/", "http://100.64.0.1/", "http://0.0.0.0/", "http://internal.example/",
        "http://rebind.example/", "file:///etc/passwd", "gopher://127.0.0.1:25/", "ftp://example.com/",
        "http://user@127.0.0.1/", "s3://other-bucket/key", "http://[::]/",
    ]  # fmt: skip
    result = RowResult(sent=len(payloads))
    for url in payloads:
        result.acknowledged += 1
        try:
            check_url(url, policy, public_dns)
        except UrlRefused:
            result.ok += 1
    # After a redirect: the first hop is an allowed origin, the second points at loopback.
    with _redirector() as origin:
        _Redirect.target = origin.replace("127.0.0.1", "localhost")
        _Redirect.hits = []
        trusting = UrlPolicy(schemes=frozenset({"http"}), trusted_origins=frozenset({origin}))
        for path in ("/go/internal", "/go/internal?x=1"):
            result.sent += 1
            result.acknowledged += 1
            try:
                fetch(f"{origin}{path}", trusting, timeout=5)
            except UrlRefused:
                result.ok += 1
        reached_internal = [h for h in _Redirect.hits if h.startswith("/internal")]
    result.leaks = len(reached_internal)
    result.notes = (
        f"refused {result.ok}/{result.sent}; internal endpoint reached {len(reached_internal)} times"
    )
    return result
