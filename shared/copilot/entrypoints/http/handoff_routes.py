"""Routes of the hand-off function (hub webhooks arrive here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from copilot.entrypoints.http.router import Api, Call, Route, health_route, raw_body
from copilot.handoff.models import WebhookAck
from copilot.ports import InboundRequest

if TYPE_CHECKING:
    from copilot.handoff.service import HandoffService


class HandoffRoutes:
    def __init__(self, handoff: Callable[[], HandoffService]) -> None:
        self._handoff = handoff
        self.api = Api(
            "Copilot hand-off webhooks",
            [
                health_route("handoff"),
                health_route("handoff", "/handoff/healthz", "Liveness check (AWS route)"),
                Route(
                    "POST",
                    "/hooks/<hub>/<copilot_id>",
                    self.webhook,
                    "A hub's agent event (signed; see docs/handoff-generic-hub.md)",
                    response_model=WebhookAck,
                    tags=["hooks"],
                ),
            ],
            function="handoff",
        )

    def webhook(self, call: Call) -> WebhookAck:
        request = call.request
        inbound = InboundRequest(
            method=request.method,
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=raw_body(request),  # the raw bytes: signatures are over them
            query=dict(request.args.items()),
        )
        return self._handoff().receive(call.params["hub"], call.params["copilot_id"], inbound)
