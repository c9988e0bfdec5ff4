"""Chat function: customer conversations and the admin API (parse -> call -> map).

functions-framework (local stack, Cloud Run) serves ``chat``; AWS Lambda calls
``lambda_handler`` with HTTP API v2 events. The routes and their services come from the
composition root, built on the first request (never at import time).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from copilot import bootstrap
from copilot.observability import configure_logging

if TYPE_CHECKING:
    import flask


def chat(request: flask.Request) -> Any:
    return bootstrap.container().chat_api.dispatch(request)


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    c = bootstrap.container()
    return c.lambda_http(c.chat_api)(event, context)


configure_logging()  # once per process: JSON lines, the level from COPILOT_LOG_LEVEL

if "AWS_LAMBDA_FUNCTION_NAME" not in os.environ:
    # Register the typed signature for functions-framework. Skipped on Lambda: importing it
    # loads Flask, ~0.2 s of every cold start.
    import flask
    import functions_framework

    chat = functions_framework.http(chat)
    # Flask's catch-all route cannot match a path holding a newline (an id with %0A): its 404
    # page would be HTML. The API answers those requests too, in JSON like any other.
    functions_framework.errorhandler(404)(lambda _: chat(flask.request))
