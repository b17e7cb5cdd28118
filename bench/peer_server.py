"""The peer: the plain FastAPI + onnxruntime server a user would write instead of a framework.

    python -m bench.peer_server --port 8000 --model digits=digits.onnx --model minilm=minilm.onnx

It speaks the same Open Inference Protocol v2 JSON as modelfleet (`POST /v2/models/{name}/infer`)
so both get byte-identical requests. It is written the idiomatic way, neither slowed down nor
tuned: pydantic models for the body, one `InferenceSession` per model with onnxruntime's default
options, a sync (`def`) endpoint so FastAPI runs the blocking `session.run` in its thread pool,
served by uvicorn with httptools and uvloop (`uvicorn[standard]`), one worker.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

DTYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
DATATYPES = {np.dtype(v): k for k, v in DTYPES.items()}


class InferInput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[int | float | bool]


class InferRequest(BaseModel):
    id: str | None = None
    inputs: list[InferInput]


class InferOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[Any]


class InferResponse(BaseModel):
    model_name: str
    id: str | None = None
    outputs: list[InferOutput]


def create_app(model_paths: dict[str, Path]) -> FastAPI:
    sessions = {
        name: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for name, path in model_paths.items()
    }
    app = FastAPI(title="peer")

    @app.get("/v2/health/ready")
    def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.post("/v2/models/{name}/infer", response_model=InferResponse)
    def infer(name: str, request: InferRequest) -> InferResponse:
        session = sessions.get(name)
        if session is None:
            raise HTTPException(status_code=404, detail=f"model {name} not found")
        try:
            feeds = {
                t.name: np.asarray(t.data, dtype=DTYPES[t.datatype]).reshape(t.shape) for t in request.inputs
            }
            names = [o.name for o in session.get_outputs()]
            results = session.run(names, feeds)
        except Exception as e:  # a malformed tensor or one the model refuses
            raise HTTPException(status_code=400, detail=str(e)) from e
        outputs = [
            InferOutput(name=n, datatype=DATATYPES[r.dtype], shape=list(r.shape), data=r.ravel().tolist())
            for n, r in zip(names, results, strict=True)
        ]
        return InferResponse(model_name=name, id=request.id, outputs=outputs)

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.peer_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", action="append", default=[], help="name=path.onnx (repeatable)")
    args = parser.parse_args(argv)
    models = {name: Path(path) for name, path in (m.split("=", 1) for m in args.model)}
    uvicorn.run(
        create_app(models),
        host=args.host,
        port=args.port,
        http="httptools",
        loop="uvloop",
        workers=1,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
