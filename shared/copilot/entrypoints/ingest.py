"""Ingest entry logic for both runtimes: CloudEvents (functions-framework) and SQS batches (Lambda)."""

from __future__ import annotations

import json
import logging
from typing import Any

from copilot.bootstrap import container
from copilot.ingest.service import IngestResult, parse_s3_notification
from copilot.knowledge.lexical_snapshots import REBUILD_ACTION

log = logging.getLogger(__name__)


def handle_notification(body: dict[str, Any]) -> list[IngestResult]:
    """One S3 event notification. Raises on transient failure (the queue redelivers)."""
    if body.get("action") == REBUILD_ACTION and isinstance(body.get("copilot_id"), str):
        count = container().lexical.rebuild(body["copilot_id"])
        return [IngestResult(f"lexical:{body['copilot_id']}", "rebuilt", chunks=count)]
    try:
        events = parse_s3_notification(body)
    except ValueError as e:
        # A malformed message can never succeed: record why and let it go.
        log.error("dropping malformed storage event: %s", e)
        return [IngestResult("", "ignored", str(e))]
    results = [container().ingest.handle(event) for event in events]
    for r in results:
        log.info("ingest %s: %s %s", r.key, r.status, r.reason or "")
    return results


def handle_refresh(copilot_id: str | None = None) -> list[str]:
    """Scheduled re-crawl of websites and sync of knowledge bases (changed pages only)."""
    lines = container().sources.refresh(copilot_id)
    for line in lines:
        log.info("refresh: %s", line)
    return lines


def handle_lambda_event(event: dict[str, Any]) -> dict[str, Any]:
    """Lambda entry: SQS batches of storage events, or the EventBridge refresh schedule."""
    if event.get("source") == "aws.events" or event.get("action") == "refresh":
        return {"refreshed": handle_refresh(event.get("copilot_id"))}
    return handle_sqs_batch(event)


def handle_sqs_batch(event: dict[str, Any]) -> dict[str, Any]:
    """Lambda SQS batch with partial failure reporting: only failed messages are retried."""
    failures = []
    for record in event.get("Records", []):
        try:
            body = json.loads(record["body"])
            if isinstance(body, dict) and "Message" in body and "Records" not in body:
                body = json.loads(body["Message"])  # delivered through SNS
            handle_notification(body if isinstance(body, dict) else {})
        except json.JSONDecodeError:
            log.error("dropping SQS message that is not JSON: %s", record.get("messageId"))
        except Exception:
            log.exception("ingest failed for %s; it will be retried", record.get("messageId"))
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
