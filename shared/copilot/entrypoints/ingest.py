"""The ingest function's work, for both runtimes.

Every message names its work the same way, by an ``action`` key in its body:

- no ``action``: an S3 event notification (a knowledge file was created or removed);
- ``"rebuild-lexical"``: rebuild a copilot's lexical snapshot (queued by the index maintainer);
- ``"refresh"``: re-crawl websites and sync knowledge bases (the daily schedule's input).

functions-framework delivers one message as a CloudEvent (its data is the body; the refresh
CloudEvent type is accepted as a refresh too); Lambda delivers SQS batches of them, or the
schedule's input. A raised exception means "retry".

Messages the queue gave up on (dead-lettered after their retries) come back once more, from the
dead-letter queue (Lambda: ``handle_dead_letter_event``; functions-framework: the
``DEAD_LETTER_EVENT`` CloudEvent type): their documents are recorded as failed, with the last
cause seen, for a person to fix and retry.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from copilot.ingest.service import IngestResult, parse_s3_notification
from copilot.knowledge.lexical_snapshots import REBUILD_ACTION
from copilot.observability import request_scope, timed

if TYPE_CHECKING:
    from copilot.ingest.service import IngestService
    from copilot.knowledge.lexical_snapshots import LexicalMaintainer
    from copilot.sources.service import SourcesService

log = logging.getLogger(__name__)

REFRESH_ACTION = "refresh"
REFRESH_EVENT = "com.copilot.sources.refresh"
DEAD_LETTER_EVENT = "com.copilot.ingest.dead-letter"
FUNCTION = "ingest"


class IngestHandler:
    def __init__(
        self,
        ingest: Callable[[], IngestService],
        lexical: Callable[[], LexicalMaintainer],
        sources: Callable[[], SourcesService],
    ) -> None:
        self._ingest = ingest
        self._lexical = lexical
        self._sources = sources

    def handle_cloud_event(self, event_type: str, data: Any, event_id: str | None = None) -> None:
        body = data if isinstance(data, dict) else {}
        if event_type == REFRESH_EVENT:
            body = {**body, "action": REFRESH_ACTION}
        with request_scope(function=FUNCTION, request_id=event_id):
            if event_type == DEAD_LETTER_EVENT:
                self.dead_letter(body)
            else:
                self.handle(body)

    def handle_lambda_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """SQS batches of messages, or the schedule's ``{"action": "refresh"}``."""
        if "Records" in event:
            return self._handle_sqs_batch(event)
        if event.get("action") == REFRESH_ACTION:
            with request_scope(function=FUNCTION):
                return {"refreshed": self._refresh(event.get("copilot_id"))}
        log.error("dropping an event that is neither an SQS batch nor a refresh: %s", list(event))
        return {"ignored": True}

    def handle_dead_letter_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """An SQS batch from the ingest dead-letter queue."""
        return self._handle_sqs_batch(event, self.dead_letter)

    def dead_letter(self, body: dict[str, Any]) -> list[IngestResult]:
        """A message the ingest queue gave up on: record its documents as failed."""
        if body.get("action") == REBUILD_ACTION and isinstance(body.get("copilot_id"), str):
            with request_scope(action=REBUILD_ACTION, copilot_id=body["copilot_id"]):
                self._lexical().give_up(body["copilot_id"])
            return []
        if body.get("action"):
            # Refreshes run again on schedule.
            log.error("gave up on %s for %s", body.get("action"), body.get("copilot_id"))
            return []
        try:
            events = parse_s3_notification(body)
        except ValueError as e:
            log.error("dropping malformed dead-lettered message: %s", e)
            return []
        results = []
        for event in events:
            with request_scope(copilot_id=event.copilot_id, document_key=event.doc_key):
                r = self._ingest().give_up(event)
                log.warning("ingest gave up on %s: %s %s", r.key, r.status, r.reason or "")
            results.append(r)
        return results

    def handle(self, body: dict[str, Any]) -> list[Any]:
        """One message, whatever its work."""
        action = body.get("action")
        if action == REFRESH_ACTION:
            return self._refresh(body.get("copilot_id"))
        if action == REBUILD_ACTION and isinstance(body.get("copilot_id"), str):
            scope = request_scope(action=REBUILD_ACTION, copilot_id=body["copilot_id"])
            with scope, timed("rebuild"):
                count = self._lexical().rebuild(body["copilot_id"])
            return [IngestResult(f"lexical:{body['copilot_id']}", "rebuilt", chunks=count)]
        return self._storage_events(body)

    def _storage_events(self, body: dict[str, Any]) -> list[IngestResult]:
        try:
            events = parse_s3_notification(body)
        except ValueError as e:
            # A malformed message can never succeed: record why and let it go.
            log.error("dropping malformed storage event: %s", e)
            return [IngestResult("", "ignored", str(e))]
        results = []
        for event in events:
            # One scope (log fields, one metrics line) per document.
            with request_scope(copilot_id=event.copilot_id, document_key=event.doc_key):
                with timed("document"):
                    r = self._ingest().handle(event)
                log.info("ingest %s: %s %s", r.key, r.status, r.reason or "")
            results.append(r)
        return results

    def _refresh(self, copilot_id: str | None) -> list[str]:
        """Scheduled re-crawl of websites and sync of knowledge bases (changed pages only)."""
        with request_scope(action=REFRESH_ACTION, copilot_id=copilot_id):
            with timed("refresh"):
                lines = self._sources().refresh(copilot_id)
            for line in lines:
                log.info("refresh: %s", line)
        return lines

    def _handle_sqs_batch(
        self, event: dict[str, Any], handle: Callable[[dict[str, Any]], list[Any]] | None = None
    ) -> dict[str, Any]:
        """Partial failure reporting: only failed messages are retried."""
        handle = handle or self.handle
        failures = []
        for record in event.get("Records", []):
            with request_scope(function=FUNCTION, request_id=record.get("messageId")):
                try:
                    body = json.loads(record["body"])
                    if isinstance(body, dict) and "Message" in body and "Records" not in body:
                        body = json.loads(body["Message"])  # delivered through SNS
                    handle(body if isinstance(body, dict) else {})
                except json.JSONDecodeError:
                    log.error("dropping SQS message that is not JSON: %s", record.get("messageId"))
                except Exception:
                    log.exception(
                        "ingest failed for %s; it will be retried", record.get("messageId")
                    )
                    failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}
