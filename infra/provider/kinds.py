"""Deployment kinds: each maps the `Deployment` resource onto one face of the platform's API.

A kind says which inputs it can change in place (`in_place`); any other change replaces the
deployment. `native` and `ml` are implemented; `service` and `pipeline` plug in here as their
APIs land (a class with the same four methods and a line in KINDS).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from infra.provider.http import NotYetAvailable, PlatformApi, PlatformError, wait_until

Sleep = Callable[[float], None]


class DeploymentKind(Protocol):
    in_place: frozenset[str]

    def create(self, api: PlatformApi, props: dict[str, Any], sleep: Sleep) -> dict[str, Any]: ...

    def update(
        self, api: PlatformApi, olds: dict[str, Any], news: dict[str, Any], sleep: Sleep
    ) -> dict[str, Any]: ...

    def delete(self, api: PlatformApi, props: dict[str, Any], sleep: Sleep) -> None: ...

    def read(self, api: PlatformApi, props: dict[str, Any]) -> dict[str, Any] | None: ...


NATIVE_CREATE_KEYS = (
    "threads_per_allocation",
    "priority",
    "queue_capacity",
    "deploy_timeout_seconds",
    "max_batch_size",
    "max_batch_delay_ms",
)


class NativeKind:
    """`/api/v1/deployments`. Allocations change in place (PATCH, with the optimistic version);
    versions and weights are fixed at creation by that API, so changing them replaces."""

    in_place = frozenset({"allocations", "wait_for"})

    def create(self, api: PlatformApi, props: dict[str, Any], sleep: Sleep) -> dict[str, Any]:
        body: dict[str, Any] = {
            "deployment_id": props["deployment_id"],
            "allocations": props.get("allocations") or 1,
        }
        body["versions"] = [
            {"model_id": v["model_id"], "weight": int(v["weight"])} for v in props["versions"]
        ]
        body.update({k: props[k] for k in NATIVE_CREATE_KEYS if props.get(k) is not None})
        api.call("POST", "/api/v1/deployments", json=body)
        try:
            return self._wait(api, props, sleep)
        except Exception:
            api.call_or_none(
                "DELETE", f"/api/v1/deployments/{props['deployment_id']}", params={"force": "true"}
            )
            raise

    def _wait(self, api: PlatformApi, props: dict[str, Any], sleep: Sleep) -> dict[str, Any]:
        path = f"/api/v1/deployments/{props['deployment_id']}"
        wanted = props.get("wait_for") or "started"
        seen: dict[str, Any] = {}

        def reached() -> bool:
            seen.update(api.call("GET", path))
            if seen["state"] == "failed":
                raise PlatformError(409, f"deployment {props['deployment_id']} failed: {seen['reason']}")
            return wanted == "none" or seen["state"] == wanted

        timeout = float(props.get("deploy_timeout_seconds") or 300) + 30
        wait_until(f"deployment {props['deployment_id']} to be {wanted}", reached, timeout, sleep)
        return {"state": seen["state"], "inference_url": seen.get("inference_url", "")}

    def update(
        self, api: PlatformApi, olds: dict[str, Any], news: dict[str, Any], sleep: Sleep
    ) -> dict[str, Any]:
        path = f"/api/v1/deployments/{news['deployment_id']}"
        if olds.get("allocations") != news.get("allocations"):
            for attempt in range(3):
                current = api.call("GET", path)
                try:
                    api.call(
                        "PATCH",
                        path,
                        json={"version": current["version"], "allocations": news["allocations"]},
                    )
                    break
                except PlatformError as e:  # changed meanwhile (heartbeats, the autoscaler): read again
                    if e.status != 409 or attempt == 2:
                        raise
        return self._wait(api, news, sleep)

    def delete(self, api: PlatformApi, props: dict[str, Any], sleep: Sleep) -> None:
        path = f"/api/v1/deployments/{props['deployment_id']}"
        if api.call_or_none("POST", f"{path}/stop") is None:
            return  # already gone

        def stopped() -> bool:
            d = api.call_or_none("GET", path)
            return d is None or d["state"] in ("stopped", "failed")

        wait_until(f"deployment {props['deployment_id']} to stop", stopped, 60, sleep)
        api.call_or_none("DELETE", path)

    def read(self, api: PlatformApi, props: dict[str, Any]) -> dict[str, Any] | None:
        d = api.call_or_none("GET", f"/api/v1/deployments/{props['deployment_id']}")
        if d is None:
            return None
        return {
            "state": d["state"],
            "allocations": d["versions"][0]["allocations"],
            "versions": [{"model_id": v["model_id"], "weight": v["weight"]} for v in d["versions"]],
        }


ML = "/_ml/trained_models"


class MlKind:
    """The Elasticsearch face: `_start` (waiting for `wait_for`), `_update` of the allocation
    count and adaptive allocations in place, `_stop` then delete."""

    in_place = frozenset({"allocations", "adaptive_allocations"})

    def create(self, api: PlatformApi, props: dict[str, Any], sleep: Sleep) -> dict[str, Any]:
        model_id = props["versions"][0]["model_id"]
        params: dict[str, Any] = {
            "deployment_id": props["deployment_id"],
            "wait_for": props.get("wait_for") or "started",
            "timeout": f"{int(props.get('deploy_timeout_seconds') or 300)}s",
        }
        optional = {
            "number_of_allocations": props.get("allocations"),
            "threads_per_allocation": props.get("threads_per_allocation"),
            "priority": props.get("priority"),
            "queue_capacity": props.get("queue_capacity"),
            "cache_size": props.get("cache_size"),
        }
        params.update({k: v for k, v in optional.items() if v is not None})
        body = (
            {"adaptive_allocations": props["adaptive_allocations"]}
            if props.get("adaptive_allocations")
            else None
        )
        out = api.call("POST", f"{ML}/{model_id}/deployment/_start", params=params, json=body)
        return {"state": out["assignment"]["assignment_state"], "inference_url": ""}

    def update(
        self, api: PlatformApi, olds: dict[str, Any], news: dict[str, Any], sleep: Sleep
    ) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if olds.get("allocations") != news.get("allocations") and news.get("allocations") is not None:
            body["number_of_allocations"] = news["allocations"]
        if olds.get("adaptive_allocations") != news.get("adaptive_allocations"):
            body["adaptive_allocations"] = news.get("adaptive_allocations") or {"enabled": False}
        out = api.call("POST", f"{ML}/{news['deployment_id']}/deployment/_update", json=body)
        return {"state": out["assignment"]["assignment_state"], "inference_url": ""}

    def delete(self, api: PlatformApi, props: dict[str, Any], sleep: Sleep) -> None:
        api.call_or_none("POST", f"{ML}/{props['deployment_id']}/deployment/_stop", params={"force": "true"})
        # `_stop` leaves a stopped record for a later `_start`; a deleted resource leaves nothing.
        api.call_or_none("DELETE", f"/api/v1/deployments/{props['deployment_id']}", params={"force": "true"})

    def read(self, api: PlatformApi, props: dict[str, Any]) -> dict[str, Any] | None:
        d = api.call_or_none("GET", f"/api/v1/deployments/{props['deployment_id']}")
        if d is None or d["state"] == "stopped":
            return None
        return {"state": d["state"], "allocations": d["versions"][0]["allocations"]}


class NotYetKind:
    """A face whose API has not landed: every call says so, nothing is half-done."""

    in_place: frozenset[str] = frozenset()

    def __init__(self, kind: str, issue: str) -> None:
        self._why = f"deployments of kind {kind!r} are not available yet (they land with {issue})"

    def create(self, api: PlatformApi, props: dict[str, Any], sleep: Sleep) -> dict[str, Any]:
        raise NotYetAvailable(self._why)

    def update(
        self, api: PlatformApi, olds: dict[str, Any], news: dict[str, Any], sleep: Sleep
    ) -> dict[str, Any]:
        raise NotYetAvailable(self._why)

    def delete(self, api: PlatformApi, props: dict[str, Any], sleep: Sleep) -> None:
        raise NotYetAvailable(self._why)

    def read(self, api: PlatformApi, props: dict[str, Any]) -> dict[str, Any] | None:
        raise NotYetAvailable(self._why)


KINDS: dict[str, DeploymentKind] = {
    "native": NativeKind(),
    "ml": MlKind(),
    "service": NotYetKind("service", "the service deployment API, /v1/{project_id}/services"),
    "pipeline": NotYetKind("pipeline", "the pipeline deployment API"),
}


def kind_of(props: dict[str, Any]) -> DeploymentKind:
    kind = props.get("kind") or "native"
    if kind not in KINDS:
        raise ValueError(f"unknown deployment kind {kind!r}; one of {sorted(KINDS)}")
    return KINDS[kind]


def real_sleep(seconds: float) -> None:
    time.sleep(seconds)
