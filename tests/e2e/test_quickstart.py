"""What a newcomer does: `modelfleet up` (what `make up` runs) prints a key and a curl line that
gets a prediction; the next start prints no key, and the example is still there."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.e2e.platform import wait_for

pytestmark = pytest.mark.e2e


def _start(home: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "MODELFLEET_BOOTSTRAP_API_KEY"}
    env["PYTHONUNBUFFERED"] = "1"
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "modelfleet", "up", "--home", str(home), "--port", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)


def test_up_prints_a_key_once_and_a_curl_line_that_predicts(tmp_path: Path) -> None:
    home, log = tmp_path / "home", tmp_path / "first.log"
    proc = _start(home, log)
    try:
        wait_for("the example to be deployed", lambda: "\nready\n" in log.read_text(), timeout=120)
        text = log.read_text()
        key = re.search(r"^  (mfk_[0-9a-f]+:\S+)$", text, re.MULTILINE)
        assert key, text
        curl = re.search(r"^  (curl -s .*)$", text, re.MULTILINE)
        assert curl and key.group(1) in curl.group(1), text
        out = subprocess.run(
            ["bash", "-c", curl.group(1)], capture_output=True, check=True, timeout=30
        ).stdout
        outputs = {o["name"]: o for o in orjson.loads(out)["outputs"]}
        probabilities = outputs["probabilities"]["data"]
        assert outputs["logits"]["shape"] == [1, 10]
        assert max(range(10), key=probabilities.__getitem__) == 0  # the sample row is a zero
    finally:
        _stop(proc)

    second = tmp_path / "second.log"
    proc = _start(home, second)
    try:
        wait_for("the second start", lambda: "\nready\n" in second.read_text(), timeout=120)
        text = second.read_text()
        assert key.group(1) not in text and "admin API key" not in text
        assert "$MODELFLEET_API_KEY" in text
    finally:
        _stop(proc)
