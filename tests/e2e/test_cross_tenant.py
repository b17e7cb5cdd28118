"""Tenancy: another project's key, given every route of every face and this project's ids,
gets 401/403/404 (or a justified 400), never 2xx on this project's objects, never 5xx, and never
this project's data; this project still sees all of it."""

from __future__ import annotations

from typing import Any

import pytest

from faults.cross_tenant import (
    MatrixIncomplete,
    Tenant,
    World,
    a_still_sees_its_objects,
    build_world,
    destroy_world,
    native_attempts,
    run_matrix,
)
from tests.e2e.conftest import DigitsModels, TinyBert
from tests.e2e.platform import PLATFORM_KEY, RunningPlatform

pytestmark = pytest.mark.e2e


def test_another_projects_key_gets_nothing_of_this_project(
    platform: RunningPlatform, digits: DigitsModels, tiny_bert: TinyBert
) -> None:
    world = build_world(platform.url, platform.admin_key, PLATFORM_KEY, digits.onnx_path, tiny_bert)
    try:
        result = run_matrix(world)
        print(result.summary())
        assert not result.failures, "\n".join(result.failures)
        assert result.leaks == [] and result.ok == result.sent
        assert result.sent >= 60  # every route of three faces, some more than once
        assert a_still_sees_its_objects(world) == []
    finally:
        destroy_world(world)


def test_the_matrix_refuses_a_route_it_cannot_fill() -> None:
    """A native route added without a probe fails the matrix instead of going untested."""
    world = World(
        url="http://unused",
        a=Tenant("default", "a:b"),
        b=Tenant("b", "c:d"),
        platform_key="e:f",
        ids={"model_id": "m", "deployment_id": "d"},
        markers=frozenset(),
        suffix="0000",
    )
    known: dict[str, Any] = {"paths": {"/api/v1/models/{model_id}": {"get": {}}}}
    assert len(native_attempts(world, known)) == 1
    new_routes: list[dict[str, Any]] = [
        {"paths": {"/api/v1/models/{model_id}/rename": {"post": {}}}},  # a new route
        {"paths": {"/api/v1/models/{model_id}": {"patch": {}}}},  # a new method
        {"paths": {"/api/v1/models/{model_id}/files/{name}": {"put": {}}}},  # an unfillable parameter
    ]
    for doc in new_routes:
        with pytest.raises(MatrixIncomplete):
            native_attempts(world, doc)
