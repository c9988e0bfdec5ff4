"""Hub outbox entry for both runtimes: one SQS record per CloudEvent (functions-framework, fed
by the local stack's pump) and SQS batches with partial failures (Lambda).

A record's body is ``{"conversation_id", "attempt"}``: "deliver what this conversation's hub
has not had yet". Raising means "retry": the record comes back after a back-off that grows with
its attempts (ChangeMessageVisibility), in order behind it on a FIFO queue.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from copilot.errors import UnavailableError
from copilot.handoff.pull import parse_job
from copilot.handoff.service import backoff_seconds
from copilot.observability import bind, request_scope, timed

if TYPE_CHECKING:
    from copilot.handoff.service import HandoffService
    from copilot.ports import HubOutbox

log = logging.getLogger(__name__)

FUNCTION = "outbox"


@dataclass(frozen=True)
class OutboxPolicy:
    max_attempts: int
    backoff_base_seconds: int
    backoff_max_seconds: int


class OutboxHandler:
    def __init__(
        self,
        handoff: Callable[[], HandoffService],
        outbox: Callable[[], HubOutbox],
        policy: OutboxPolicy,
    ) -> None:
        self._handoff = handoff
        self._outbox = outbox
        self._policy = policy

    def handle_record(self, record: dict[str, Any]) -> None:
        with request_scope(function=FUNCTION, request_id=record.get("messageId")):
            self._deliver(record)

    def _deliver(self, record: dict[str, Any]) -> None:
        job = parse_job(str(record.get("body", "")))
        if job is not None:  # the pull queue's: read a hub without webhooks for a while
            bind(conversation_id=job[0])
            with timed("pull"):
                self._handoff().run_pull(*job)
            return
        parsed = _parse(record)
        if parsed is None:
            # It can never succeed: record why and let it go (the conversation is the outbox).
            log.error("dropping malformed hub outbox message %s", record.get("messageId"))
            return
        conversation_id, attempt, receives = parsed
        bind(conversation_id=conversation_id, attempt=str(attempt + receives))
        with timed("delivery"):
            self._handoff().process_outbox(
                conversation_id,
                attempt + receives,
                last_delivery=receives >= self._policy.max_attempts,
            )

    def handle_batch(self, event: dict[str, Any]) -> dict[str, Any]:
        """Lambda SQS batch. On a FIFO queue a failed record blocks the later records of its
        conversation (message group): they are reported failed unprocessed, keeping the order."""
        failures: list[dict[str, str]] = []
        blocked: set[str] = set()
        for record in event.get("Records", []):
            group = record.get("attributes", {}).get("MessageGroupId") or record["messageId"]
            with request_scope(function=FUNCTION, request_id=record.get("messageId")):
                if group not in blocked:
                    try:
                        self._deliver(record)
                        continue
                    except Exception:
                        log.exception("hub outbox: %s will be retried", record.get("messageId"))
                        blocked.add(group)
                failures.append({"itemIdentifier": record["messageId"]})
                self._retry_later(record)
        return {"batchItemFailures": failures}

    def _retry_later(self, record: dict[str, Any]) -> None:
        """Back off before the record's next delivery (else: the queue's visibility timeout)."""
        parsed = _parse(record)
        if parsed is None or not record.get("receiptHandle"):
            return
        if parse_job(str(record.get("body", ""))) is not None:
            return  # a pull job comes back after its queue's visibility timeout
        _, attempt, receives = parsed
        p = self._policy
        seconds = backoff_seconds(attempt + receives, p.backoff_base_seconds, p.backoff_max_seconds)
        try:
            self._outbox().retry_later(record["receiptHandle"], seconds)
        except UnavailableError:
            log.warning(
                "could not back off %s; it returns after the visibility timeout",
                record.get("messageId"),
            )


def _parse(record: dict[str, Any]) -> tuple[str, int, int] | None:
    """(conversation id, earlier attempts, receives of this record), or None if malformed."""
    try:
        body = json.loads(record["body"])
        conversation_id = str(body["conversation_id"])
        attempt = int(body.get("attempt", 0))
        receives = int(record.get("attributes", {}).get("ApproximateReceiveCount", 1))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return conversation_id, attempt, receives
