"""Routes of the hand-off function (hub webhooks arrive here)."""

from __future__ import annotations

from functools import cache

from copilot.web.api import Api, Call, Route
from copilot.web.chat_routes import Health


def health(call: Call) -> Health:
    return Health(function="handoff")


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
        ],
    )
