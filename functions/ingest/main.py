"""Ingest function: storage events, lexical rebuilds and source refreshes -> knowledge index;
and the analytics events table's stream -> the analytics archive.

functions-framework delivers each message as a CloudEvent (``ingest``); AWS Lambda calls
``lambda_handler`` with SQS batches of them, or with the refresh schedule's input, and
``dead_letter_handler`` with what the ingest queue gave up on. A raised exception means "retry".
What each message asks for: copilot.entrypoints.ingest.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from copilot import bootstrap
from copilot.entrypoints.analytics import EVENT_TYPES as ANALYTICS_EVENTS
from copilot.observability import configure_logging

if TYPE_CHECKING:
    from cloudevents.http import CloudEvent


def ingest(cloud_event: CloudEvent) -> None:
    kind = cloud_event["type"]
    if kind in ANALYTICS_EVENTS:  # the local stack's stream pump: the analytics archive
        analytics = bootstrap.container().analytics_handler
        analytics.handle_cloud_event(kind, cloud_event.get_data(), cloud_event["id"])
        return
    handler = bootstrap.container().ingest_handler
    handler.handle_cloud_event(kind, cloud_event.get_data(), cloud_event["id"])


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return bootstrap.container().ingest_handler.handle_lambda_event(event)


def analytics_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The analytics events table's stream: events into the archive (copilot.analytics)."""
    return bootstrap.container().analytics_handler.handle_stream_event(event)


def analytics_lost_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Stream batches given up on (the stream's on-failure queue): counted, never silent."""
    return bootstrap.container().analytics_handler.handle_lost_event(event)


def dead_letter_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """SQS batches from the ingest dead-letter queue: their documents are recorded as failed."""
    return bootstrap.container().ingest_handler.handle_dead_letter_event(event)


configure_logging()  # once per process: JSON lines, the level from COPILOT_LOG_LEVEL

if "AWS_LAMBDA_FUNCTION_NAME" not in os.environ:
    # Register the typed signature for functions-framework. Skipped on Lambda: importing it
    # loads Flask, ~0.2 s of every cold start.
    import functions_framework

    ingest = functions_framework.cloud_event(ingest)
