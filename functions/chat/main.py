"""Chat function: customer conversations and the admin API (parse -> call -> map)."""

from __future__ import annotations

from typing import Any

import flask
import functions_framework

from copilot.web.chat_routes import chat_api

_lambda: Any = None


@functions_framework.http
def chat(request: flask.Request) -> Any:
    return chat_api().dispatch(request)


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _lambda
    if _lambda is None:
        from copilot.lambda_http import lambda_handler_for

        _lambda = lambda_handler_for(chat_api())
    return _lambda(event, context)
