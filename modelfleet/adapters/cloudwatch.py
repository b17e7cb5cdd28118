"""CloudWatch: the platform's own metrics (the workers' demand signal). One adapter per service."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from modelfleet.adapters.errors import BackendUnavailable
from modelfleet.resources import MetricSpec


class MetricPublisher:
    def __init__(self, client: Any, dimension_value: str) -> None:
        self._c = client
        self._dimension_value = dimension_value

    def publish(self, metric: MetricSpec, value: float) -> None:
        try:
            self._c.put_metric_data(
                Namespace=metric.namespace,
                MetricData=[
                    {
                        "MetricName": metric.name,
                        "Dimensions": [{"Name": metric.dimension, "Value": self._dimension_value}],
                        "Value": value,
                        "Unit": metric.unit,
                    }
                ],
            )
        except (ClientError, BotoCoreError) as e:
            raise BackendUnavailable(f"CloudWatch put_metric_data failed: {e}") from e
