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


@dataclass(frozen=True)
class Received:
    """A message with how many times it has been received (SQS's ApproximateReceiveCount)."""

    body: str
    receipt: str
    receive_count: int
    message_id: str


class WorkQueue:
    """A work queue with a DLQ: send, long-poll receive, extend visibility, delete (batch tasks)."""

    def __init__(self, client: Any, queue_url: str) -> None:
        self._c = client
        self.queue_url = queue_url

    def _call(self, op: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._c, op)(QueueUrl=self.queue_url, **kwargs)
        except (ClientError, BotoCoreError) as e:
            raise BackendUnavailable(f"SQS {op} failed: {e}") from e

    def send(self, bodies: list[str]) -> None:
        for start in range(0, len(bodies), 10):
            chunk = bodies[start : start + 10]
            out = self._call(
                "send_message_batch", Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(chunk)]
            )
            if out.get("Failed"):
                raise BackendUnavailable(f"SQS send failed for {len(out['Failed'])} message(s)")

    def receive(
        self, wait_seconds: int, max_messages: int = 1, visibility_seconds: int | None = None
    ) -> list[Received]:
        extra = {"VisibilityTimeout": visibility_seconds} if visibility_seconds is not None else {}
        out = self._call(
            "receive_message",
            WaitTimeSeconds=wait_seconds,
            MaxNumberOfMessages=max_messages,
            AttributeNames=["ApproximateReceiveCount"],
            **extra,
        )
        return [
            Received(
                body=m["Body"],
                receipt=m["ReceiptHandle"],
                receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
                message_id=m["MessageId"],
            )
            for m in out.get("Messages", [])
        ]

    def set_visibility(self, receipt: str, seconds: int) -> None:
        self._call("change_message_visibility", ReceiptHandle=receipt, VisibilityTimeout=seconds)

    def delete(self, receipt: str) -> None:
        self._call("delete_message", ReceiptHandle=receipt)

    def depth(self) -> int:
        """Visible plus in-flight messages (approximate, as SQS reports them)."""
        attrs = self._call(
            "get_queue_attributes",
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs.get("ApproximateNumberOfMessages", 0)) + int(
            attrs.get("ApproximateNumberOfMessagesNotVisible", 0)
        )


def redrive(source: WorkQueue, dlq: WorkQueue, limit: int | None = None) -> int:
    """Move messages from a dead-letter queue back to its source queue; returns how many moved.

    Each message is sent to the source before it is deleted from the DLQ, so a crash in between
    leaves it in both (delivered twice, never lost); consumers of modelfleet's queues write
    results under deterministic keys, so a second delivery changes nothing. SQS's own
    `StartMessageMoveTask` does the same in the cloud; the local AWS stand-in lacks it."""
    moved = 0
    while limit is None or moved < limit:
        batch = dlq.receive(0, min(10, limit - moved) if limit is not None else 10, visibility_seconds=30)
        if not batch:
            return moved
        for m in batch:
            source.send([m.body])
            dlq.delete(m.receipt)
            moved += 1
    return moved
