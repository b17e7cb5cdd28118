"""The autoscale task publishes the workers' demand signal (processors wanted by the deployments
over processors of live cloud nodes) as the CloudWatch metric the cloud's worker service scales on."""

from __future__ import annotations

import datetime as dt

import boto3
import pytest

from modelfleet.resources import WORKER_DEMAND
from tests.e2e.platform import RunningPlatform, wait_for

pytestmark = pytest.mark.e2e


def test_the_demand_ratio_is_published(platform: RunningPlatform) -> None:
    cloudwatch = boto3.client(
        "cloudwatch",
        endpoint_url=platform.aws_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )

    def datapoints() -> list[dict[str, object]]:
        now = dt.datetime.now(dt.UTC)
        return list(
            cloudwatch.get_metric_statistics(
                Namespace=WORKER_DEMAND.namespace,
                MetricName=WORKER_DEMAND.name,
                Dimensions=[{"Name": WORKER_DEMAND.dimension, "Value": "modelfleet"}],
                StartTime=now - dt.timedelta(minutes=10),
                EndTime=now + dt.timedelta(minutes=1),
                Period=60,
                Statistics=["Maximum", "Minimum"],
            )["Datapoints"]
        )

    points = wait_for("the demand metric", datapoints, timeout=30)
    # 2 live nodes of 4 processors: the ratio is wanted/8, finite and never negative
    assert all(0 <= float(p["Minimum"]) <= float(p["Maximum"]) < 1000 for p in points)  # type: ignore[arg-type]
