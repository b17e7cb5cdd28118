"""The example of `make up`: the digits classifier, registered and deployed through the real API,
then a ready `curl` line that gets a prediction."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from modelfleet.client import ApiError, Client
from modelfleet.examples.digits import build_example, sample_row

DEPLOYMENT = "digits"


def curl_line(url: str, api_key: str | None) -> str:
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": sample_row()}]}
    key = api_key or "$MODELFLEET_API_KEY"
    return (
        f"curl -s -X POST {url}/v2/models/{DEPLOYMENT}/infer "
        f"-H \"Authorization: Bearer {key}\" -H 'content-type: application/json' "
        f"-d {shlex.quote(json.dumps(body, separators=(',', ':')))}"
    )


def deploy_example(url: str, api_key: str | None, workdir: Path) -> None:
    if api_key is None:
        print(
            "The example deployment 'digits' was set up at first start; its key was printed then.\n"
            "Set MODELFLEET_API_KEY to that key (or start with MODELFLEET_BOOTSTRAP_API_KEY=id:secret)"
            " and run:\n"
            f"  {curl_line(url, None)}",
            flush=True,
        )
        return
    with Client(url, api_key) as client:
        try:
            client.get_deployment(DEPLOYMENT)
        except ApiError as e:
            if e.status != 404:
                raise
            workdir.mkdir(parents=True, exist_ok=True)
            path = build_example(workdir)
            model = client.register_model(path, name="digits-mlp", format="onnx")
            client.deploy(DEPLOYMENT, model_id=model["model_id"])
        client.wait_for_state(DEPLOYMENT, "started", timeout=120)
    print(f"deployment '{DEPLOYMENT}' is started. Get a prediction:\n  {curl_line(url, api_key)}", flush=True)
