"""An in-memory hub for unit tests: it collects what the copilot sends, and its inbound calls
are neutral events as JSON, authenticated by the secret itself in ``X-Test-Secret``."""

from __future__ import annotations

import json
import threading
from datetime import datetime

from pydantic import TypeAdapter, ValidationError

from copilot.errors import (
    BadRequestError,
    ForbiddenError,
    HubRejectedError,
    HubUnavailableError,
    UnauthorizedError,
)
from copilot.handoff.models import HubCommand, HubEvent, HubReceipt, HubSettings
from copilot.ports import HubAdapter, InboundRequest

_EVENTS = TypeAdapter(list[HubEvent])


class CollectingHub(HubAdapter):
    name = "collecting"

    def __init__(self) -> None:
        self.sent: list[HubCommand] = []
        self.attempts = 0
        self.unavailable = False  # every send fails as if the hub were down
        self.reject_start: str | None = None  # e.g. "no_agents": starts are declined
        self.receipts = False  # answer starts with a receipt, as the named hubs do
        self._lock = threading.Lock()

    def verify(
        self, request: InboundRequest, hub: HubSettings | None, secret: str, now: datetime
    ) -> None:
        given = request.header("X-Test-Secret")
        if not given:
            raise UnauthorizedError("no X-Test-Secret")
        if given != secret:
            raise ForbiddenError("wrong X-Test-Secret")

    def parse(self, request: InboundRequest, hub: HubSettings) -> list[HubEvent]:
        try:
            return _EVENTS.validate_python(json.loads(request.body))
        except (ValueError, ValidationError) as e:
            raise BadRequestError(f"not a list of events: {e}") from None

    def send(self, hub: HubSettings, secret: str, command: HubCommand) -> HubReceipt | None:
        with self._lock:
            self.attempts += 1
            if self.unavailable:
                raise HubUnavailableError("the collecting hub is down")
            if command.kind == "start" and self.reject_start:
                raise HubRejectedError("declined", reason=self.reject_start)
            self.sent.append(command)
            if command.kind == "start" and self.receipts:
                return HubReceipt(
                    hub_conversation_id=f"hub-{command.conversation_id}",
                    state={"started": command.handoff_id},
                )
            return None

    @staticmethod
    def request(events: list[HubEvent], secret: str) -> InboundRequest:
        body = _EVENTS.dump_json(events)
        return InboundRequest("POST", "/hooks/generic/x", {"x-test-secret": secret}, body)
