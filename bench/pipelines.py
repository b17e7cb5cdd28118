"""Cold start of an `elastic` pipeline deployment, driven by the official `craft-ai-sdk` client.

An elastic deployment in stand-by has no executor process; its next trigger waits for one (a
Python interpreter, the user's module imported) and then runs. This measures, as the client sees
it, `trigger_endpoint` from stand-by to its outputs, and for comparison the same call on a warm
executor. Stand-by is reached by disabling and re-enabling the deployment (which drops the
executor), so no idle timeout has to pass.

    python -m bench.pipelines            # its own platform; prints the two medians

In `make bench` (bench/__main__.py) it is one cold-start figure:
`mf["cold_start"]["pipeline_elastic_wake"] = pipelines.elastic_wake_to_first_output(url, key, workdir)`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.coldstart import Timing

PIPELINE = "bench-echo"
DEPLOYMENT = "bench-echo-elastic"
SOURCE = "def echo(x):\n    return {'y': x}\n"


def _craft() -> Any:
    """The client package, untyped (it ships no annotations on these calls)."""
    return importlib.import_module("craft_ai_sdk")


def _sdk(url: str, key: str) -> Any:
    return _craft().CraftAiSdk(
        sdk_token=key, environment_url=f"{url}/mlops", control_url=f"{url}/mlops", verbose_log=False
    )


def _median(samples: list[float], what: str) -> Timing:
    ordered = sorted(samples)
    return Timing.measured(
        ordered[len(ordered) // 2],
        f"{what}, median of {len(ordered)}: " + ", ".join(f"{s:.3f}" for s in ordered),
    )


def measure(url: str, key: str, workdir: Path, runs: int = 5) -> dict[str, Timing]:
    """{"elastic_wake": stand-by -> outputs, "warm": the same call on a warm executor}."""
    craft = _craft()
    Input, Output = craft.Input, craft.Output
    SdkException = importlib.import_module("craft_ai_sdk.exceptions").SdkException

    sdk = _sdk(url, key)
    folder = Path(tempfile.mkdtemp(prefix="bench-pipeline-", dir=workdir))
    (folder / "main.py").write_text(SOURCE)
    (folder / "requirements.txt").write_text("")
    try:
        sdk.create_pipeline(
            PIPELINE,
            function_path="main.py",
            function_name="echo",
            container_config={"local_folder": str(folder)},
            inputs=[Input("x", "number")],
            outputs=[Output("y", "number")],
        )
        sdk.create_deployment(PIPELINE, DEPLOYMENT, execution_rule="endpoint", mode="elastic")
        cold: list[float] = []
        warm: list[float] = []
        for i in range(runs):
            sdk.update_deployment(DEPLOYMENT, is_enabled=False)
            assert sdk.update_deployment(DEPLOYMENT, is_enabled=True)["status"] == "standby"
            t0 = time.perf_counter()
            out = sdk.trigger_endpoint(DEPLOYMENT, inputs={"x": i})
            cold.append(time.perf_counter() - t0)
            assert out["outputs"] == {"y": i}, out
            t0 = time.perf_counter()
            sdk.trigger_endpoint(DEPLOYMENT, inputs={"x": i})
            warm.append(time.perf_counter() - t0)
    except SdkException as e:
        return {"elastic_wake": Timing.error(str(e)), "warm": Timing.error(str(e))}
    finally:
        with contextlib.suppress(SdkException):
            sdk.delete_pipeline(PIPELINE, force_deployments_deletion=True)
    return {
        "elastic_wake": _median(cold, "stand-by -> outputs"),
        "warm": _median(warm, "warm executor -> outputs"),
    }


def elastic_wake_to_first_output(url: str, key: str, workdir: Path, runs: int = 5) -> Timing:
    """The cold-start figure of `make bench` (its note carries the warm median for comparison)."""
    timings = measure(url, key, workdir, runs)
    wake, warm = timings["elastic_wake"], timings["warm"]
    if wake.status != "measured":
        return wake
    assert wake.seconds is not None
    warm_note = f"; warm {warm.seconds:.3f} s" if warm.seconds is not None else ""
    return Timing.measured(wake.seconds, wake.note + warm_note)


def main(argv: list[str] | None = None) -> int:
    from bench.platform import start_platform

    parser = argparse.ArgumentParser(prog="python -m bench.pipelines", description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-pipelines-"))
    platform = start_platform(workdir)
    try:
        for name, timing in measure(platform.url, platform.admin_key, workdir, args.runs).items():
            shown = f"{timing.seconds:.3f} s" if timing.seconds is not None else timing.status
            print(f"{name:>14}: {shown}  ({timing.note})")
    finally:
        platform.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
