"""Hand-off function: hub webhooks (HTTP) and the hub outbox (queue), parse -> call -> map.

functions-framework serves two targets from this file: ``handoff`` (HTTP) and ``outbox`` (one
CloudEvent per outbox message). On Lambda one handler takes both: HTTP API events and SQS
batches of the outbox queue.
"""

from __future__ import annotations

from typing import Any

import flask
import functions_framework
from cloudevents.http import CloudEvent

from copilot.entrypoints.http.handoff_routes import handoff_api
from copilot.entrypoints.outbox import handle_outbox_batch, handle_outbox_record

_lambda: Any = None


@functions_framework.http
def handoff(request: flask.Request) -> Any:
    return handoff_api().dispatch(request)


@functions_framework.cloud_event
def outbox(cloud_event: CloudEvent) -> None:
    data = cloud_event.get_data()
    handle_outbox_record(data if isinstance(data, dict) else {})


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if "Records" in event:
        return handle_outbox_batch(event)
    global _lambda
    if _lambda is None:
        from copilot.entrypoints.http.lambda_adapter import lambda_handler_for

        _lambda = lambda_handler_for(handoff_api())
    return _lambda(event, context)
