"""Ingest function: storage events -> knowledge index.

functions-framework delivers each S3 event notification as a CloudEvent whose data is the
notification body; Lambda delivers SQS batches of them. A raised exception means "retry".
"""

from __future__ import annotations

from typing import Any

import functions_framework
from cloudevents.http import CloudEvent

from copilot.entrypoints.ingest import handle_lambda_event, handle_notification, handle_refresh

REFRESH_EVENT = "com.copilot.sources.refresh"


@functions_framework.cloud_event
def ingest(cloud_event: CloudEvent) -> None:
    data = cloud_event.get_data()
    if cloud_event["type"] == REFRESH_EVENT:
        handle_refresh((data or {}).get("copilot_id") if isinstance(data, dict) else None)
        return
    handle_notification(data if isinstance(data, dict) else {})


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle_lambda_event(event)
