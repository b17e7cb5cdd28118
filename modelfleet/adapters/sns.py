"""SNS adapter: publishes status events with message attributes for filter policies."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from modelfleet.adapters.errors import BackendUnavailable
from schemas.events import StatusEvent


class EventPublisher:
    def __init__(self, client: Any, topic_arn: str) -> None:
        self._c = client
        self.topic_arn = topic_arn

    def publish(self, event: StatusEvent) -> None:
        try:
            self._c.publish(
                TopicArn=self.topic_arn,
                Message=event.model_dump_json(),
                MessageAttributes={
                    k: {"DataType": "String", "StringValue": v} for k, v in event.attributes().items()
                },
            )
        except (ClientError, BotoCoreError) as e:
            raise BackendUnavailable(f"SNS publish failed: {e}") from e

    @staticmethod
    def topic_arn_for(client: Any, name: str) -> str:
        # CreateTopic is idempotent and returns the ARN of an existing topic.
        arn: str = client.create_topic(Name=name)["TopicArn"]
        return arn
