"""API Gateway HTTP API (payload format 2.0) events, as Lambda hands them to the chat function.

Shared by the benchmark and its cold-start probe. Standard library only, so importing it costs
nothing measurable in the probe.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any


def http_api_event(
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API v2 event for ``method path`` with a JSON body."""
    now = time.time()
    hdrs = {
        "accept": "application/json",
        "content-type": "application/json",
        "host": "bench.execute-api.us-east-1.amazonaws.com",
        "user-agent": "copilot-bench/1",
        "x-forwarded-for": "127.0.0.1",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    if token:
        hdrs["authorization"] = f"Bearer {token}"
    hdrs.update({k.lower(): v for k, v in (headers or {}).items()})
    raw = json.dumps(body) if body is not None else ""
    hdrs["content-length"] = str(len(raw.encode()))
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": hdrs,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "bench",
            "domainName": hdrs["host"],
            "domainPrefix": "bench",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": hdrs["user-agent"],
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": raw,
        "isBase64Encoded": False,
    }


def post_message_event(conversation_id: str, token: str, text: str) -> dict[str, Any]:
    return http_api_event(
        "POST", f"/conversations/{conversation_id}/messages", {"text": text}, token=token
    )


def start_conversation_event(copilot_id: str) -> dict[str, Any]:
    return http_api_event("POST", f"/copilots/{copilot_id}/conversations", {})


def copilot_replies(response: dict[str, Any]) -> list[dict[str, Any]]:
    """The copilot's messages in a Lambda proxy response of POST .../messages."""
    body = json.loads(response.get("body") or "{}")
    return [m for m in body.get("messages", []) if m.get("role") == "copilot"]


def has_citation(response: dict[str, Any]) -> bool:
    return any(m.get("citations") for m in copilot_replies(response))
