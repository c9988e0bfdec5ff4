"""The ingest function's work, for both runtimes.

Every message names its work the same way, by an ``action`` key in its body:

- no ``action``: an S3 event notification (a knowledge file was created or removed);
- ``"rebuild-lexical"``: merge a copilot's lexical index segments (queued by the maintainer);
- ``"refresh"``: re-crawl websites and sync knowledge bases (the daily schedule's input).

functions-framework delivers one message as a CloudEvent (its data is the body; the refresh
CloudEvent type is accepted as a refresh too), or an SQS batch of them (``BATCH_EVENT``, the
local stack's pump); Lambda delivers SQS batches, or the schedule's input. The storage events
of a batch are indexed together. A raised exception means "retry".

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

from copilot.ingest.service import (
    IngestResult,
    ObjectEvent,
    parse_s3_notification,
    transient_cause,
)
from copilot.knowledge.lexical_snapshots import REBUILD_ACTION
from copilot.observability import add_metric, request_scope, timed

if TYPE_CHECKING:
    from copilot.ingest.service import IngestService
    from copilot.knowledge.lexical_snapshots import LexicalMaintainer
    from copilot.sources.service import SourcesService

log = logging.getLogger(__name__)

REFRESH_ACTION = "refresh"
REFRESH_EVENT = "com.copilot.sources.refresh"
DEAD_LETTER_EVENT = "com.copilot.ingest.dead-letter"
# An SQS batch (``{"Records": [...]}``) delivered as one CloudEvent, as the local stack's pump
# does: Lambda's event source hands the function batches, and indexing batches is cheaper.
BATCH_EVENT = "com.amazonaws.sqs.batch"


class BatchFailed(Exception):
    """Some messages of a batch event failed: the caller delivers the batch's messages again,
    one by one (the ones already done are found unchanged)."""


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
        if event_type == BATCH_EVENT:
            # An SQS batch, as Lambda's event source delivers it: raises when some messages
            # failed (the caller delivers those again one by one).
            failures = self._handle_sqs_batch(body)["batchItemFailures"]
            if failures:
                ids = ", ".join(f["itemIdentifier"] for f in failures)
                raise BatchFailed(f"{len(failures)} message(s) of the batch failed: {ids}")
            return
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
            with scope, timed("merge"):
                merges = self._lexical().compact(body["copilot_id"])
            return [IngestResult(f"lexical:{body['copilot_id']}", "merged", chunks=merges)]
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
        """Partial failure reporting: only failed messages are retried. Storage events of
        the batch are indexed together (IngestService.handle_batch); other work, and the
        dead-letter queue's messages, one message at a time."""
        failures = []
        storage: list[tuple[str, list[ObjectEvent]]] = []
        for record in event.get("Records", []):
            message_id = record.get("messageId")
            with request_scope(function=FUNCTION, request_id=message_id):
                try:
                    body = json.loads(record["body"])
                    if isinstance(body, dict) and "Message" in body and "Records" not in body:
                        body = json.loads(body["Message"])  # delivered through SNS
                    body = body if isinstance(body, dict) else {}
                    if handle is None and not body.get("action"):
                        storage.append((message_id, self._parse_storage(body)))
                        continue
                    (handle or self.handle)(body)
                except json.JSONDecodeError:
                    log.error("dropping SQS message that is not JSON: %s", message_id)
                except Exception:
                    log.exception("ingest failed for %s; it will be retried", message_id)
                    failures.append({"itemIdentifier": message_id})
        if storage:
            failed = self._index_together(storage)
            failures += [{"itemIdentifier": m} for m in failed]
        return {"batchItemFailures": failures}

    def _parse_storage(self, body: dict[str, Any]) -> list[ObjectEvent]:
        try:
            return parse_s3_notification(body)
        except ValueError as e:
            # A malformed message can never succeed: record why and let it go.
            log.error("dropping malformed storage event: %s", e)
            return []

    def _index_together(self, messages: list[tuple[str, list[ObjectEvent]]]) -> list[str]:
        """Index the storage events of several messages as one batch; the ids of the
        messages with an event that failed for a transient cause (to be retried)."""
        events = [e for _, message_events in messages for e in message_events]
        with request_scope(function=FUNCTION, action="batch"), timed("batch"):
            add_metric("documents", len(events))
            results = self._ingest().handle_batch(events) if events else []
        failed: list[str] = []
        at = 0
        for message_id, message_events in messages:
            outcome = results[at : at + len(message_events)]
            at += len(message_events)
            for event, result in zip(message_events, outcome, strict=True):
                with request_scope(
                    function=FUNCTION,
                    request_id=message_id,
                    copilot_id=event.copilot_id,
                    document_key=event.doc_key,
                ):
                    if isinstance(result, Exception):
                        log.error(
                            "ingest failed for %s; it will be retried: %s",
                            event.key,
                            transient_cause(result),
                        )
                    else:
                        log.info("ingest %s: %s %s", result.key, result.status, result.reason or "")
            if any(isinstance(r, Exception) for r in outcome):
                failed.append(message_id)
        return failed
