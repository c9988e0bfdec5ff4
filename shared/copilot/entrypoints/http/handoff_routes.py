"""Routes of the hand-off function (hub webhooks arrive here)."""

from __future__ import annotations

from functools import cache

from copilot.bootstrap import container
from copilot.entrypoints.http.chat_routes import Health
from copilot.entrypoints.http.router import MAX_BODY_BYTES, Api, Call, Route
from copilot.errors import PayloadTooLargeError
from copilot.handoff.models import WebhookAck
from copilot.ports import InboundRequest


def health(call: Call) -> Health:
    return Health(function="handoff")


def webhook(call: Call) -> WebhookAck:
    request = call.request
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"the request body is over {MAX_BODY_BYTES // 1024} KB")
    body = request.get_data(cache=True)  # the raw bytes: signatures are over them
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"the request body is over {MAX_BODY_BYTES // 1024} KB")
    inbound = InboundRequest(
        method=request.method,
        path=request.path,
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
        query=dict(request.args.items()),
    )
    return container().handoff.receive(call.params["hub"], call.params["copilot_id"], inbound)


@cache
def handoff_api() -> Api:
    return Api(
        "Copilot hand-off webhooks",
        [
            Route("GET", "/healthz", health, "Liveness check", response_model=Health, tags=["ops"]),
            Route(
                "GET",
                "/handoff/healthz",
                health,
                "Liveness check (AWS route)",
                response_model=Health,
                tags=["ops"],
            ),
            Route(
                "POST",
                "/hooks/<hub>/<copilot_id>",
                webhook,
                "A hub's agent event (signed; see docs/handoff-generic-hub.md)",
                response_model=WebhookAck,
                tags=["hooks"],
            ),
        ],
    )
