"""SQS adapters: event queues and the hub outbox."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from copilot.errors import UnavailableError
from copilot.ports import EventQueue, HubOutbox


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


class SqsHubOutbox(HubOutbox):
    """The hub outbox on an SQS FIFO queue: one message group per conversation keeps its calls
    in order and one at a time; a standard queue works too (order then rests on the cursor)."""

    def __init__(self, client: Any, queue_url: str) -> None:
        self._sqs = client
        self._url = queue_url
        self._fifo = queue_url.endswith(".fifo")

    def nudge(self, conversation_id: str, dedup_id: str, attempt: int = 0) -> None:
        body = json.dumps({"conversation_id": conversation_id, "attempt": attempt})
        ordering = (
            {"MessageGroupId": conversation_id, "MessageDeduplicationId": dedup_id[:128]}
            if self._fifo
            else {}
        )
        try:
            self._sqs.send_message(QueueUrl=self._url, MessageBody=body, **ordering)
        except (ClientError, BotoCoreError) as e:
            raise UnavailableError("the hub outbox is unavailable") from e

    def retry_later(self, receipt_handle: str, seconds: int) -> None:
        try:
            self._sqs.change_message_visibility(
                QueueUrl=self._url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
            )
        except (ClientError, BotoCoreError) as e:
            # The message comes back after the queue's own visibility timeout instead.
            raise UnavailableError("could not delay the outbox message") from e
