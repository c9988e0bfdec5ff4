"""AWS Lambda adapter for the HTTP functions (API Gateway HTTP API v2 events -> WSGI)."""

from __future__ import annotations

from typing import Any

from copilot.entrypoints.http.router import Api


def lambda_handler_for(api: Api) -> Any:
    from apig_wsgi import make_lambda_handler

    return make_lambda_handler(api.wsgi(), binary_support=False)
