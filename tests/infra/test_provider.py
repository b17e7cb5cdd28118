"""The dynamic provider's create/diff/update/delete, called directly against the real local
platform (the Pulumi engine can't run here): models uploaded by digest, deployments of the native
and ml kinds, in-place updates vs replacements, clean deletes."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest

from infra.provider import Deployment, DeploymentProvider, EdgeServiceProvider, ModelProvider
from infra.provider.http import NotYetAvailable, PlatformApi
from infra.provider.model import digests_of
from modelfleet.examples.tiny_text import build_tiny_text_classifier
from tests.e2e.platform import ADMIN_KEY, RunningPlatform, start_platform
from tests.unit.onnx_builders import linear

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    running = start_platform(tmp_path_factory.mktemp("provider-platform"), nodes=1)
    try:
        yield running
    finally:
        running.stop()


def _model_props(platform: RunningPlatform, files: list[Path], **extra: Any) -> dict[str, Any]:
    props = {
        "url": platform.url,
        "api_key": ADMIN_KEY,
        "ca_file": platform.ca_file,
        "kind": "native",
        "name": "linear",
        "version": "1",
        "format": "onnx",
        "files": [str(f) for f in files],
        "digests": digests_of([str(f) for f in files]),
        "chosen_id": None,
    }
    return {**props, **extra}


def _get(platform: RunningPlatform, path: str) -> Any:
    with PlatformApi(platform.url, ADMIN_KEY, platform.ca_file) as api:
        return api.call_or_none("GET", path)


def test_a_model_is_uploaded_once_per_digest(platform: RunningPlatform, tmp_path: Path) -> None:
    provider = ModelProvider()
    onnx = linear(tmp_path / "linear.onnx")
    props = _model_props(platform, [onnx])
    created = provider.create(props)
    assert created.outs["state"] == "ready" and created.outs["uploaded"] == ["linear.onnx"]
    model_id = created.id
    assert (
        _get(platform, f"/api/v1/models/{model_id}")["files"][0]["sha256"] == props["digests"]["linear.onnx"]
    )

    # The same bytes elsewhere: an in-place update that uploads nothing.
    moved = tmp_path / "moved" / "linear.onnx"
    moved.parent.mkdir()
    shutil.copy(onnx, moved)
    news = _model_props(platform, [moved])
    diff = provider.diff(model_id, created.outs, news)
    assert diff.changes and not diff.replaces
    updated = provider.update(model_id, created.outs, news)
    assert updated.outs["model_id"] == model_id and updated.outs["uploaded"] == []

    # New bytes: a new model version, created before the old one goes (the id is generated).
    (tmp_path / "v2").mkdir()
    changed = linear(tmp_path / "v2" / "linear.onnx", features=5)
    diff = provider.diff(model_id, updated.outs, _model_props(platform, [changed]))
    assert diff.replaces == ["digests"] and diff.delete_before_replace is False
    # A rotated key changes nothing on the platform.
    assert not provider.diff(model_id, created.outs, {**props, "api_key": "mfk_other:secret"}).replaces

    assert provider.read(model_id, updated.outs).id == model_id
    provider.delete(model_id, updated.outs)
    assert _get(platform, f"/api/v1/models/{model_id}") is None
    assert provider.read(model_id, updated.outs).id is None
    provider.delete(model_id, updated.outs)  # deleting what is gone is fine


def test_a_chosen_model_id_is_adopted_when_its_bytes_are_there(
    platform: RunningPlatform, tmp_path: Path
) -> None:
    provider = ModelProvider()
    props = _model_props(platform, [linear(tmp_path / "linear.onnx")], chosen_id="linear-chosen")
    first = provider.create(props)
    assert first.id == "linear-chosen" and first.outs["uploaded"] == ["linear.onnx"]
    again = provider.create(props)  # a rebuilt stack: same id, same digest
    assert again.id == "linear-chosen" and again.outs["uploaded"] == []
    diff = provider.diff(first.id, first.outs, {**props, "version": "2"})
    assert diff.replaces == ["version"] and diff.delete_before_replace is True
    provider.delete(first.id, first.outs)


def test_native_deployment_updates_allocations_in_place_and_replaces_the_rest(
    platform: RunningPlatform, tmp_path: Path
) -> None:
    models = ModelProvider()
    model = models.create(_model_props(platform, [linear(tmp_path / "linear.onnx")]))
    provider = DeploymentProvider()
    props = {
        "url": platform.url,
        "api_key": ADMIN_KEY,
        "ca_file": platform.ca_file,
        "kind": "native",
        "deployment_id": "pulumi-native",
        "versions": [{"model_id": model.id, "weight": 100}],
        "allocations": 1,
        "wait_for": "started",
    }
    created = provider.create(props)
    try:
        assert created.id == "pulumi-native" and created.outs["state"] == "started"

        news = {**created.outs, "allocations": 2}
        diff = provider.diff(created.id, created.outs, news)
        assert diff.changes and diff.replaces == []
        updated = provider.update(created.id, created.outs, news)
        assert updated.outs["state"] == "started"
        view = _get(platform, "/api/v1/deployments/pulumi-native")
        assert [v["allocations"] for v in view["versions"]] == [2]
        assert provider.read(created.id, updated.outs).outs["allocations"] == 2

        weights = {
            **news,
            "versions": [{"model_id": model.id, "weight": 50}, {"model_id": "other", "weight": 50}],
        }
        assert provider.diff(created.id, updated.outs, weights).replaces == ["versions"]
        renamed = provider.diff(created.id, updated.outs, {**news, "deployment_id": "pulumi-native-2"})
        assert renamed.replaces == ["deployment_id"] and renamed.delete_before_replace
        assert provider.diff(created.id, updated.outs, {**news, "api_key": "mfk_x:y"}).replaces == []
    finally:
        provider.delete(created.id, created.outs)
    assert _get(platform, "/api/v1/deployments/pulumi-native") is None
    assert provider.read(created.id, created.outs).id is None
    models.delete(model.id, model.outs)  # clean: the deployment no longer holds it


def test_ml_deployment_starts_updates_and_stops_through_the_elasticsearch_face(
    platform: RunningPlatform, tmp_path: Path
) -> None:
    tiny = build_tiny_text_classifier(tmp_path)
    models = ModelProvider()
    model_props = _model_props(
        platform,
        [tiny.classifier_onnx],
        kind="ml",
        chosen_id="pulumi-tiny",
        inference_config=tiny.classifier_config,
        vocabulary=tiny.vocabulary,
        model_type="onnx",
    )
    model = models.create(model_props)
    assert model.id == "pulumi-tiny"
    provider = DeploymentProvider()
    props = {
        "url": platform.url,
        "api_key": ADMIN_KEY,
        "ca_file": platform.ca_file,
        "kind": "ml",
        "deployment_id": "pulumi-tiny-dep",
        "versions": [{"model_id": "pulumi-tiny", "weight": 100}],
        "allocations": 1,
        "threads_per_allocation": 1,
        "wait_for": "started",
    }
    created = provider.create(props)
    try:
        assert created.outs["state"] == "started"
        news = {**created.outs, "allocations": 2}
        assert provider.diff(created.id, created.outs, news).replaces == []
        provider.update(created.id, created.outs, news)
        view = _get(platform, "/api/v1/deployments/pulumi-tiny-dep")
        assert view["kind"] == "ml" and view["versions"][0]["allocations"] == 2
        assert provider.diff(created.id, created.outs, {**news, "threads_per_allocation": 2}).replaces == [
            "threads_per_allocation"
        ]
    finally:
        provider.delete(created.id, created.outs)
    assert _get(platform, "/api/v1/deployments/pulumi-tiny-dep") is None
    models.delete(model.id, model.outs)
    assert _get(platform, "/_ml/trained_models/pulumi-tiny") is None


def test_kinds_not_landed_yet_say_so(platform: RunningPlatform) -> None:
    props = {
        "url": platform.url,
        "api_key": ADMIN_KEY,
        "kind": "service",
        "deployment_id": "s",
        "versions": [],
    }
    with pytest.raises(NotYetAvailable, match="service"):
        DeploymentProvider().create(props)
    with pytest.raises(NotYetAvailable, match="EdgeService"):
        EdgeServiceProvider().create({"url": platform.url, "api_key": ADMIN_KEY})
    with pytest.raises(ValueError, match="unknown deployment kind"):
        DeploymentProvider().create({**props, "kind": "nonsense"})


class _Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        return {}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_api_key_is_a_pulumi_secret() -> None:
    pulumi.runtime.set_mocks(_Mocks(), project="stack", stack="test", preview=False)
    seen: list[bool] = []

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        d = Deployment("d", url="http://x", api_key="mfk_a:b", deployment_id="d", model_id="m")
        api_key: pulumi.Output[str] = d.api_key  # type: ignore[attr-defined]
        return pulumi.Output.all(api_key.is_secret(), d.deployment_id).apply(lambda a: seen.append(a[0]))  # type: ignore[attr-defined]

    program()
    assert seen == [True]
