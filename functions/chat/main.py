"""Chat function: customer conversations and the admin API (parse -> call -> map)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from copilot.entrypoints.http.chat_routes import chat_api

if TYPE_CHECKING:
    import flask

_lambda: Any = None


def chat(request: flask.Request) -> Any:
    return chat_api().dispatch(request)


if "AWS_LAMBDA_FUNCTION_NAME" not in os.environ:
    # functions-framework (local stack, Cloud Run): register the typed HTTP signature. On
    # Lambda it is skipped: importing it loads Flask, ~0.2 s of every cold start.
    import functions_framework

    chat = functions_framework.http(chat)


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _lambda
    if _lambda is None:
        from copilot.entrypoints.http.lambda_adapter import lambda_handler_for

        _lambda = lambda_handler_for(chat_api())
    return _lambda(event, context)
