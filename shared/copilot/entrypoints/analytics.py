"""The analytics archive's feed, for both runtimes (copilot.analytics.export).

Lambda delivers the events table's DynamoDB stream in batches (``handle_stream_event``; a
raised exception means "retry the batch"), and the batches its event source gave up on from
the on-failure queue (``handle_lost_event``). functions-framework delivers the same payloads
as CloudEvents of types ``STREAM_EVENT`` and ``LOST_EVENT`` (the local stack's stream pump).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from copilot.observability import request_scope

if TYPE_CHECKING:
    from copilot.analytics.export import EventExporter

log = logging.getLogger(__name__)

STREAM_EVENT = "com.amazonaws.dynamodb.stream"
LOST_EVENT = "com.copilot.analytics.lost"
EVENT_TYPES = (STREAM_EVENT, LOST_EVENT)
FUNCTION = "analytics"


class AnalyticsHandler:
    def __init__(self, exporter: Callable[[], EventExporter]) -> None:
        self._exporter = exporter

    def handle_cloud_event(self, event_type: str, data: Any, event_id: str | None = None) -> None:
        body = data if isinstance(data, dict) else {}
        if event_type == STREAM_EVENT:
            self.handle_stream_event(body, event_id)
        else:
            self.handle_lost_event(body, event_id)

    def handle_stream_event(
        self, event: dict[str, Any], request_id: str | None = None
    ) -> dict[str, Any]:
        records = event.get("Records") or []
        with request_scope(function=FUNCTION, request_id=request_id):
            result = self._exporter().export(records)
            log.info("archived %d analytics events in %d objects", result.events, result.objects)
        return {"events": result.events, "objects": result.objects}

    def handle_lost_event(
        self, event: dict[str, Any], request_id: str | None = None
    ) -> dict[str, Any]:
        """On-failure records: directly (a stream's on-failure destination invoking the
        function), or as SQS messages whose bodies are those records."""
        failures = []
        for record in event.get("Records") or [event]:
            body = record.get("body") if isinstance(record, dict) else None
            try:
                failures.append(json.loads(body) if isinstance(body, str) else record)
            except ValueError:
                log.error("dropping a malformed on-failure record: %.200s", body)
        with request_scope(function=FUNCTION, request_id=request_id):
            return {"lost": self._exporter().lost(failures)}
