"""The service face's validation: the seed's seven samples pass verbatim, and each rule answers
its own code."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from modelfleet.core.rollout import Strategy
from modelfleet.faces.service.errors import ServiceError
from modelfleet.faces.service.validation import from_pydantic, rollout_policy, validate_create
from schemas.services import RolloutRequest, ServiceCreate
from tests.e2e.test_services import POOL, SAMPLES, sample

IDS = {"A": "0e07b41b-173e-42db-8c16-8e1b44cc0d44", "B": "598b913a-af3e-41ba-a1b5-bf065320f1e2"}


def check(body: dict[str, Any], pools: frozenset[str] = frozenset({POOL})) -> Any:
    try:
        req = ServiceCreate.model_validate(body)
    except ValidationError as e:
        raise from_pydantic(e) from None
    return validate_create(req, pools, 5)


@pytest.mark.parametrize("name", list(SAMPLES))
def test_every_seed_sample_is_accepted_verbatim(name: str) -> None:
    plan = check(sample(name, **IDS))
    assert plan.versions and plan.name == SAMPLES[name]["service_name"]


def test_sample_details() -> None:
    split = check(sample("multi-version", **IDS))
    assert [v.weight for v in split.versions] == [70, 30]
    assert split.versions[0].envs == {"model_name": "mxnet-model-1", "load_epoch": "0"}
    custom = check(sample("custom-in-pool", **IDS)).versions[0]
    assert (custom.size.cpu, custom.size.threads, custom.size.memory_mb, custom.pool) == (1.5, 2, 7500, POOL)
    assert check(sample("auto-stop", **IDS)).stop_after == ("HOURS", 1)


def test_config_pool_wins_over_service_pool() -> None:
    body = sample("custom-in-pool", **IDS)
    body["cluster_id"] = "other"
    body["config"][0]["pool_name"] = POOL
    assert check(body, frozenset({POOL, "other"})).versions[0].pool == POOL


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("service_name", "", "ModelArts.3001"),
        ("description", "a&b", "ModelArts.3002"),
        ("infer_type", "online", "ModelArts.3003"),
        ("vpc_id", "v", "ModelArts.3004"),
        ("cluster_id", "nowhere", "ModelArts.3005"),
    ],
)
def test_service_level_rules(field: str, value: str, code: str) -> None:
    body = sample("real-time", **IDS)
    body[field] = value
    with pytest.raises(ServiceError) as e:
        check(body)
    assert e.value.code == code and e.value.status == 400


def test_max_instances_per_project() -> None:
    body = sample("real-time", **IDS)
    body["config"][0]["instance_count"] = 6
    req = ServiceCreate.model_validate(body)
    assert validate_create(req, frozenset(), 8).versions[0].instance_count == 6
    with pytest.raises(ServiceError) as e:
        validate_create(req, frozenset(), 5)
    assert e.value.code == "ModelArts.3014"


def test_rollout_policy_from_the_seeds_fields() -> None:
    body = sample("real-time", **IDS)
    body["config"][0]["instance_count"] = 4
    body["config"][0]["additional_properties"] = {"max_surge": 0.5, "max_unavailable": 0.5}
    plan = check(body)
    policy = rollout_policy(None, plan.versions)
    assert (policy.strategy, policy.max_surge, policy.max_unavailable) == (Strategy.ROLLING, 2, 2)
    canary = rollout_policy(RolloutRequest(strategy="linear", step_percent=40), plan.versions)
    assert canary.steps == (40, 80, 100)
    with pytest.raises(ServiceError) as e:
        rollout_policy(RolloutRequest(strategy="blue-green"), plan.versions)
    assert e.value.code == "ModelArts.3025"
