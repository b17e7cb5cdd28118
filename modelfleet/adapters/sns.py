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


class TopicNotifier:
    """Publishes to topics users name (a service's `smn_notification.topic_urn`)."""

    def __init__(self, client: Any) -> None:
        self._c = client

    def exists(self, topic_arn: str) -> bool:
        """True when the topic exists (and we may read it); a malformed ARN is simply False."""
        try:
            self._c.get_topic_attributes(TopicArn=topic_arn)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in ("NotFound", "InvalidParameter", "AuthorizationError", "InvalidParameterValue"):
                return False
            raise BackendUnavailable(f"SNS GetTopicAttributes failed: {e}") from e
        except BotoCoreError as e:
            raise BackendUnavailable(f"SNS GetTopicAttributes failed: {e}") from e
        return True

    def publish(self, topic_arn: str, message: str, attributes: dict[str, str]) -> bool:
        """Publish; False when the topic no longer exists (retrying would never succeed)."""
        try:
            self._c.publish(
                TopicArn=topic_arn,
                Message=message,
                MessageAttributes={
                    k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
                },
            )
        except ClientError as e:
            if e.response.get("Error", {}).get("Code", "") in ("NotFound", "InvalidParameter"):
                return False
            raise BackendUnavailable(f"SNS publish failed: {e}") from e
        except BotoCoreError as e:
            raise BackendUnavailable(f"SNS publish failed: {e}") from e
        return True
