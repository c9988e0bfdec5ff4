"""SQS adapter for event queues."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from copilot.errors import UnavailableError
from copilot.ports import EventQueue


class SqsEventQueue(EventQueue):
    def __init__(self, client: Any, queue_url: str) -> None:
        self._sqs = client
        self._url = queue_url

    def send_many(self, bodies: Sequence[str], delay_seconds: int = 0) -> None:
        for start in range(0, len(bodies), 10):  # SendMessageBatch takes 10 at most
            entries = [
                {"Id": str(i), "MessageBody": body, "DelaySeconds": delay_seconds}
                for i, body in enumerate(bodies[start : start + 10])
            ]
            try:
                response = self._sqs.send_message_batch(QueueUrl=self._url, Entries=entries)
            except (ClientError, BotoCoreError) as e:
                raise UnavailableError("the queue is unavailable") from e
            if response.get("Failed"):
                raise UnavailableError(f"the queue refused {len(response['Failed'])} message(s)")
