"""The event archive: analytics events from the events table's stream to dated, compressed JSON
lines in the analytics bucket, one object per copilot and day per stream batch:

    events/copilot=<copilot_id>/dt=<YYYY-MM-DD>/<first>-<last>.jsonl.gz

(Hive-style partitions: Athena's partition projection and DuckDB's hive_partitioning read the
same keys.) An object is named after the stream sequence numbers of its batch, so a batch
delivered again (a retry after a failure) overwrites its own objects; a batch split differently
on a retry writes an event twice, under other names, and reports count each event_id once.

Nothing here can fail a customer's turn: the events were written with the turn; when the
bucket is unavailable the stream's batch is retried (Lambda's event source mapping, the local
stack's stream pump) and delivered later. A batch given up on is reported (``lost``) as a
metric and a marker object, never dropped silently.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from copilot.analytics.events import AnalyticsEvent
from copilot.observability import add_metric
from copilot.ports import BlobStore

log = logging.getLogger(__name__)

EVENTS_PREFIX = "events/"
LOST_PREFIX = "lost/"


def partition(copilot_id: str, day: str) -> str:
    return f"{EVENTS_PREFIX}copilot={copilot_id}/dt={day}/"


def jsonl_gz(lines: Iterable[str]) -> bytes:
    """One archive object's body: the JSON lines, gzipped."""
    return gzip.compress("".join(line + "\n" for line in lines).encode(), 6)


@dataclass(frozen=True)
class ExportResult:
    events: int
    objects: int


class EventExporter:
    def __init__(self, archive: BlobStore) -> None:
        self._archive = archive

    def export(self, records: Iterable[Mapping[str, Any]]) -> ExportResult:
        """A DynamoDB stream batch (Lambda's records) into the archive. UnavailableError
        (the bucket): the whole batch is retried."""
        groups: dict[tuple[str, str], list[tuple[int, AnalyticsEvent]]] = defaultdict(list)
        for record in records:
            if record.get("eventName") != "INSERT":
                continue  # TTL removals of buffered events
            stream = record.get("dynamodb") or {}
            body = ((stream.get("NewImage") or {}).get("body") or {}).get("S")
            if not body:
                continue
            try:
                event = AnalyticsEvent.model_validate_json(body)
            except ValueError:
                # Not ours to fix by retrying: say so, keep the rest of the batch.
                log.error("an analytics event could not be read; skipped: %.200s", body)
                add_metric("AnalyticsEventsUnreadable", 1)
                continue
            seq = int(stream.get("SequenceNumber") or 0)
            groups[(event.copilot_id, event.at.date().isoformat())].append((seq, event))
        for (copilot_id, day), members in groups.items():
            seqs = [s for s, _ in members]
            lines = (e.model_dump_json(exclude_none=True) for _, e in members)
            key = f"{partition(copilot_id, day)}{min(seqs):024d}-{max(seqs):024d}.jsonl.gz"
            self._archive.put(key, jsonl_gz(lines), "application/gzip")
        exported = sum(len(m) for m in groups.values())
        add_metric("AnalyticsEventsExported", exported)
        return ExportResult(events=exported, objects=len(groups))

    def lost(self, failures: Iterable[Mapping[str, Any]]) -> int:
        """Batches the stream gave up on (the event source's on-failure destination: its
        ``DDBStreamBatchInfo``): counted in a metric and recorded in the archive, where
        reports show them."""
        count = 0
        for failure in failures:
            info = failure.get("DDBStreamBatchInfo") or {}
            size = int(info.get("batchSize") or 0)
            first = str(info.get("startSequenceNumber") or "0")
            last = str(info.get("endSequenceNumber") or "0")
            day = str(info.get("approximateArrivalOfFirstRecord") or "")[:10] or "unknown"
            marker = {"events": size, "first": first, "last": last, "day": day}
            key = f"{LOST_PREFIX}dt={day}/{int(first):024d}-{int(last):024d}.json"
            self._archive.put(key, json.dumps(marker).encode(), "application/json")
            log.error("analytics: %d events were given up on (stream %s..%s)", size, first, last)
            count += size
        add_metric("AnalyticsEventsLost", count)
        return count
