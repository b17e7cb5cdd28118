"""SQS adapter: long-poll receive and delete, for consumers such as the gateway's invalidation feed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from modelfleet.adapters.errors import BackendUnavailable


@dataclass(frozen=True)
class Message:
    body: str
    receipt: str
    attributes: dict[str, str]


class QueueConsumer:
    def __init__(self, client: Any, queue_url: str) -> None:
        self._c = client
        self.queue_url = queue_url

    @staticmethod
    def url_for(client: Any, name: str) -> str:
        try:
            url: str = client.get_queue_url(QueueName=name)["QueueUrl"]
            return url
        except (ClientError, BotoCoreError) as e:
            raise BackendUnavailable(f"SQS queue {name} unavailable: {e}") from e

    def receive(self, wait_seconds: int = 10, max_messages: int = 10) -> list[Message]:
        try:
            out = self._c.receive_message(
                QueueUrl=self.queue_url,
                WaitTimeSeconds=wait_seconds,
                MaxNumberOfMessages=max_messages,
                MessageAttributeNames=["All"],
            )
        except (ClientError, BotoCoreError) as e:
            raise BackendUnavailable(f"SQS receive failed: {e}") from e
        return [
            Message(
                body=m["Body"],
                receipt=m["ReceiptHandle"],
                attributes={k: v.get("StringValue", "") for k, v in m.get("MessageAttributes", {}).items()},
            )
            for m in out.get("Messages", [])
        ]

    def delete(self, messages: list[Message]) -> None:
        if not messages:
            return
        try:
            self._c.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m.receipt} for i, m in enumerate(messages)],
            )
        except (ClientError, BotoCoreError) as e:
            raise BackendUnavailable(f"SQS delete failed: {e}") from e
