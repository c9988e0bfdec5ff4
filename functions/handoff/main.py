"""Hand-off function: hub webhooks (HTTP) and the hub outbox (queue), parse -> call -> map.

functions-framework serves two targets from this file: ``handoff`` (HTTP) and ``outbox`` (one
CloudEvent per outbox message). AWS Lambda calls ``lambda_handler`` with both: HTTP API v2
events and SQS batches of the outbox queue.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from copilot import bootstrap
from copilot.observability import configure_logging

if TYPE_CHECKING:
    import flask
    from cloudevents.http import CloudEvent


def handoff(request: flask.Request) -> Any:
    return bootstrap.container().handoff_api.dispatch(request)


def outbox(cloud_event: CloudEvent) -> None:
    data = cloud_event.get_data()
    bootstrap.container().outbox_handler.handle_record(data if isinstance(data, dict) else {})


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    c = bootstrap.container()
    if "Records" in event:
        return c.outbox_handler.handle_batch(event)
    return c.lambda_http(c.handoff_api)(event, context)


configure_logging()  # once per process: JSON lines, the level from COPILOT_LOG_LEVEL

if "AWS_LAMBDA_FUNCTION_NAME" not in os.environ:
    # Register the typed signatures for functions-framework. Skipped on Lambda: importing it
    # loads Flask, ~0.2 s of every cold start.
    import flask
    import functions_framework

    handoff = functions_framework.http(handoff)
    outbox = functions_framework.cloud_event(outbox)
    # Flask's catch-all route cannot match a path holding a newline (an id with %0A): its 404
    # page would be HTML. The webhook API answers those requests too, in JSON.
    functions_framework.errorhandler(404)(lambda _: handoff(flask.request))
