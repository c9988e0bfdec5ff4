"""Neutral hand-off commands, and a webhook server answering as one adapter, for the hub
adapters' unit tests (each test file names its own conversation, copilot and context values)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from copilot.errors import CopilotError
from copilot.handoff.models import HandoffContext, HubCommand, HubEvent, HubSettings
from copilot.ports import HubAdapter, InboundRequest
from copilot_dev.emulators import LoopbackServer


def handoff_context(conversation_id: str, copilot_id: str, **fields: Any) -> HandoffContext:
    values: dict[str, Any] = {
        "conversation_id": conversation_id,
        "bot_id": copilot_id,
        "bot_name": "Northwind",
        "language": "en",
    }
    return HandoffContext(**(values | fields))


def hub_command(
    kind: str, seq: int, conversation_id: str, copilot_id: str, handoff_id: str, **fields: Any
) -> HubCommand:
    """The command the outbox sends for our message ``seq`` (event id ``<conv>:<seq>``)."""
    return HubCommand(
        kind=kind,  # type: ignore[arg-type]
        event_id=f"{conversation_id}:{seq}",
        sequence=seq,
        conversation_id=conversation_id,
        copilot_id=copilot_id,
        handoff_id=handoff_id,
        **fields,
    )


class HookServer(LoopbackServer):
    """A hand-off function's webhook, as far as one adapter answers it: ``verify`` then
    ``parse`` (the copilot ``copilot_id`` has ``hub``; any other has none), the events kept;
    the first ``failures`` calls are answered 503."""

    def __init__(
        self,
        adapter: Callable[[], HubAdapter],
        copilot_id: str,
        hub: HubSettings,
        secret: Callable[[], str],
        failures: int = 0,
    ) -> None:
        super().__init__()
        self.adapter, self.copilot_id, self.hub, self.secret = adapter, copilot_id, hub, secret
        self.failures = failures
        self.events: list[HubEvent] = []
        self.lock = threading.Lock()

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        http = Request(environ)
        hub = self.hub if http.path.rsplit("/", 1)[-1] == self.copilot_id else None
        headers = {k.lower(): v for k, v in http.headers.items()}
        request = InboundRequest("POST", http.path, headers, http.get_data())
        with self.lock:
            if self.failures:
                self.failures -= 1
                return Response(status=503)(environ, start_response)
        try:
            self.adapter().verify(request, hub, self.secret(), datetime.now(UTC))
            assert hub is not None
            events = self.adapter().parse(request, hub)
        except CopilotError as e:
            body = json.dumps({"error": str(e)})
            return Response(body, status=e.status)(environ, start_response)
        with self.lock:
            self.events += events
        return Response(status=200)(environ, start_response)


def deliver_at_once(send: Callable[[HubCommand], object], commands: list[HubCommand]) -> None:
    """The same commands delivered, in order, by three outbox deliveries at once (the outbox
    is at-least-once): an adapter must still send each once."""

    def deliver() -> None:
        for command in commands:
            send(command)

    threads = [threading.Thread(target=deliver) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
