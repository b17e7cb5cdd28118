"""Stack configuration: `Pulumi.<stack>.yaml` (see `Pulumi.dev.yaml.example`) read into one
frozen dataclass, so components take plain values and tests build configs without Pulumi."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import pulumi


@dataclass(frozen=True)
class AlarmThresholds:
    dlq_messages: int = 1  # any message in a dead-letter queue
    api_5xx_percent: float = 1.0  # of requests over 5 minutes
    throttles: int = 5  # throttled invocations of one function in 5 minutes
    worker_min_running: int = 1  # running worker tasks below this for 3 minutes


@dataclass(frozen=True)
class StackConfig:
    prefix: str = "modelfleet"  # physical names: `<prefix>-<logical>` (MODELFLEET_STACK at run time)
    region: str = "us-east-1"
    production: bool = False  # deletion protection on tables, retained bucket and keys
    lambda_zip: str = "dist/lambda.zip"  # `make package` builds it
    lambda_memory_mb: int | None = None  # None: each handler's own size (infra/handlers.py)
    log_level: str = "INFO"
    log_retention_days: int = 30
    api_rate_limit: float = 200.0  # steady requests per second, whole API
    api_burst_limit: int = 400
    authorizer_cache_seconds: int = 30  # a revoked key may pass for at most this long
    worker_image: str = "ghcr.io/modelfleet/worker:latest"  # docker/worker.Dockerfile, pushed to ECR
    worker_cpu: int = 2048  # Fargate CPU units (1024 = 1 vCPU)
    worker_memory_mb: int = 4096
    worker_min: int = 1
    worker_max: int = 8
    worker_target_demand: float = 0.8  # processors wanted / available the scaling aims at
    vpc_cidr: str = "10.42.0.0/16"
    edge_enabled: bool = False
    edge_rate_limit: float = 20.0  # node sync requests per second across all edge agents
    alarm_email: str | None = None
    alarms: AlarmThresholds = field(default_factory=AlarmThresholds)
    artifact_noncurrent_days: int = 30  # old model versions (noncurrent objects) are kept this long
    batch_output_days: int = 14  # batch outputs under batch/ expire after this

    @classmethod
    def from_mapping(cls, values: dict[str, Any], region: str | None = None) -> StackConfig:
        """From camelCase keys (`workerCpu`) as in Pulumi.<stack>.yaml; unknown keys are refused."""
        by_key = {_camel(f.name): f for f in fields(cls) if f.name not in ("alarms", "region")}
        alarm_keys = {_camel(f.name): f.name for f in fields(AlarmThresholds)}
        kwargs: dict[str, Any] = {}
        alarms: dict[str, Any] = {}
        for key, value in values.items():
            if key == "alarms":
                unknown = set(value) - set(alarm_keys)
                if unknown:
                    raise ValueError(f"unknown alarm settings: {sorted(unknown)}")
                alarms = {alarm_keys[k]: v for k, v in value.items()}
            elif key in by_key:
                kwargs[by_key[key].name] = value
            else:
                raise ValueError(f"unknown stack setting modelfleet:{key}")
        kwargs["alarms"] = AlarmThresholds(**alarms)
        if region:
            kwargs["region"] = region
        return cls(**kwargs)

    @classmethod
    def load(cls) -> StackConfig:
        """The running stack's settings (`modelfleet:*` and `aws:region`)."""
        cfg = pulumi.Config("modelfleet")
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = _camel(f.name)
            if f.name == "region":
                continue
            raw = cfg.get_object(key) if f.name == "alarms" else cfg.get(key)
            if raw is None:
                continue
            values[key] = raw if f.name == "alarms" else _typed(f.type, raw)
        region = pulumi.Config("aws").get("region")
        return cls.from_mapping(values, region)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _typed(annotation: object, raw: str) -> Any:
    kind = str(annotation)
    if kind.startswith("bool"):
        return raw.lower() in ("true", "1", "yes")
    if kind.startswith("int"):
        return int(raw)
    if kind.startswith("float"):
        return float(raw)
    return raw
