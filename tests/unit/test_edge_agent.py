"""The edge agent's parts: resumable, verified downloads (through httpx's MockTransport, the I/O
seam), the atomic slot swap and the health check, and what it keeps on disk."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from edge_agent.artifacts import ArtifactError, TransferError, fetch_model, verify_model_dir
from edge_agent.control import Backoff
from edge_agent.serving import HealthCheckFailed, Served, Slots, load_and_check
from edge_agent.storage import AgentStore, Identity
from tests.edge_support import scale_model

BLOB = os.urandom(300_000)


class FileServer:
    """Serves BLOB with Range support; `cut_after` bytes into the first response it breaks the
    connection (a download cut mid-file)."""

    def __init__(self, body: bytes = BLOB, cut_after: int | None = None) -> None:
        self.body = body
        self.cut_after = cut_after
        self.ranges: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        rng = request.headers.get("range")
        self.ranges.append(rng)
        start = int(rng.removeprefix("bytes=").rstrip("-")) if rng else 0
        data = self.body[start:]
        cut, self.cut_after = self.cut_after, None

        def stream() -> Iterator[bytes]:
            sent = 0
            for i in range(0, len(data), 65536):
                chunk = data[i : i + 65536]
                if cut is not None and sent + len(chunk) > cut:
                    yield chunk[: cut - sent]
                    raise httpx.ReadError("connection reset")
                sent += len(chunk)
                yield chunk

        return httpx.Response(206 if rng else 200, content=stream())


def _files(body: bytes = BLOB) -> list[dict[str, object]]:
    return [
        {
            "name": "model.bin",
            "sha256": hashlib.sha256(body).hexdigest(),
            "size_bytes": len(body),
            "url": "http://s3.test/model.bin",
        }
    ]


def _dirs(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "dl").mkdir()
    (tmp_path / "models").mkdir()
    return tmp_path / "dl", tmp_path / "models"


def test_a_cut_download_resumes_with_a_range_and_only_then_appears(tmp_path: Path) -> None:
    downloads, models = _dirs(tmp_path)
    server = FileServer(cut_after=100_000)
    client = httpx.Client(transport=httpx.MockTransport(server))
    with pytest.raises(TransferError):
        fetch_model("m1", _files(), downloads, models, client)
    assert not (models / "m1").exists()  # a partial download is never where models load from
    assert (downloads / "m1" / "model.bin.part").stat().st_size == 100_000
    path = fetch_model("m1", _files(), downloads, models, client)
    assert server.ranges == [None, "bytes=100000-"]
    assert (path / "model.bin").read_bytes() == BLOB
    assert not (downloads / "m1").exists()


def test_a_one_byte_change_is_refused(tmp_path: Path) -> None:
    downloads, models = _dirs(tmp_path)
    tampered = bytearray(BLOB)
    tampered[12345] ^= 1
    client = httpx.Client(transport=httpx.MockTransport(FileServer(bytes(tampered))))
    with pytest.raises(ArtifactError, match="sha256"):
        fetch_model("m1", _files(BLOB), downloads, models, client)
    assert not (models / "m1").exists()
    assert not (downloads / "m1" / "model.bin.part").exists()


def test_an_expired_link_asks_for_fresh_urls(tmp_path: Path) -> None:
    downloads, models = _dirs(tmp_path)
    client = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(403)))
    with pytest.raises(TransferError) as e:
        fetch_model("m1", _files(), downloads, models, client)
    assert e.value.stale_url


def test_files_changed_on_disk_are_refused_before_a_load(tmp_path: Path) -> None:
    downloads, models = _dirs(tmp_path)
    client = httpx.Client(transport=httpx.MockTransport(FileServer()))
    path = fetch_model("m1", _files(), downloads, models, client)
    digests = {"model.bin": hashlib.sha256(BLOB).hexdigest()}
    verify_model_dir(path, digests)
    with (path / "model.bin").open("r+b") as f:
        f.write(b"\x00")
    with pytest.raises(ArtifactError, match="changed on disk"):
        verify_model_dir(path, digests)


def test_swap_is_atomic_and_the_health_check_refuses_a_poisoned_model(tmp_path: Path) -> None:
    for name, factor, poisoned in (("v1", 1.0, False), ("v2", 2.0, False), ("bad", 3.0, True)):
        (tmp_path / name).mkdir()
        scale_model(tmp_path / name / "m.onnx", factor, poisoned)
    slots = Slots()
    x = np.ones((1, 4), np.float32)
    v1 = load_and_check("onnx", tmp_path / "v1", "m.onnx", None)
    assert slots.swap(Served("svc", "demo", "v1", v1)) is None
    held = slots.get("demo")  # a request that started on v1
    v2 = load_and_check("onnx", tmp_path / "v2", "m.onnx", None)
    old = slots.swap(Served("svc", "demo", "v2", v2))
    assert old is not None and old.model_id == "v1"
    assert held is not None and float(held.model.run({"x": x})["y"][0, 0]) == 1.0  # still runs
    got = slots.run("demo", {"x": x})
    assert got is not None and got[0].model_id == "v2" and float(got[1]["y"][0, 0]) == 2.0
    with pytest.raises(HealthCheckFailed, match="not finite"):
        load_and_check("onnx", tmp_path / "bad", "m.onnx", None)
    assert slots.get("demo") is not None and slots.get("demo").model_id == "v2"  # type: ignore[union-attr]


def test_identity_is_kept_owner_only(tmp_path: Path) -> None:
    store = AgentStore(tmp_path / "agent")
    store.save_identity(Identity("n1", "p", "mfk_x:secret", "http://cp"))
    assert stat.S_IMODE((tmp_path / "agent" / "identity.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "agent").stat().st_mode) == 0o700
    assert AgentStore(tmp_path / "agent").identity() == Identity("n1", "p", "mfk_x:secret", "http://cp")


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    import random

    b = Backoff(base=0.5, cap=4.0, rng=random.Random(1))
    delays = [b.next() for _ in range(10)]
    assert all(0 < d <= 4.0 for d in delays)
    assert max(delays[5:]) > max(delays[:1])
    assert len(set(delays)) == len(delays)  # jittered
    b.reset()
    assert b.next() <= 0.5
