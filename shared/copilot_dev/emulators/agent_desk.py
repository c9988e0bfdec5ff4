"""The generic hub (docs/handoff-generic-hub.md) on loopback, with the agent desk in front.

It receives the copilot's signed hand-off events (``POST /handoff``: ``handoff.initiate``, the
customer's messages, ``handoff.end``), keeps one session per hand-off, and sends the agent's
events back to the copilot's webhook (signed, with the hub's per-hand-off sequence numbers,
retried like a hub retries). The person's side (page, console, JSON API) is the desk's
(copilot_dev.emulators.desk); ``reject_with`` declines hand-offs (e.g. "no_agents").
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import requests
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from copilot.errors import CopilotError
from copilot.handoff.hubs.generic import TOLERANCE_SECONDS, signed_headers, verify_signature
from copilot_dev.emulators.desk import (
    ACTIONS,
    AgentAction,
    DeskSession,
    HubDesk,
    Tampered,
    json_answer,
)

__all__ = ["ACTIONS", "AgentDesk", "DeskSession"]

WIRE: dict[str, str] = {
    "joined": "agent.joined",
    "message": "agent.message",
    "typing": "agent.typing",
    "left": "agent.left",
    "ended": "handoff.ended",
}


class AgentDesk(HubDesk):
    hub_type = "generic"
    ordered = True

    def __init__(
        self,
        secret: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        webhook_url: str | None = None,
        agent_name: str = "Alex",
        tolerance: int = TOLERANCE_SECONDS,
        retries: int = 3,
        token: str | None = None,
    ) -> None:
        self.secret = secret
        self.tolerance = tolerance
        self._seen: set[str] = set()
        super().__init__(
            host=host,
            port=port,
            webhook_url=webhook_url,
            agent_name=agent_name,
            retries=retries,
            token=token,
        )

    def hub_rules(self) -> list[Rule]:
        return [Rule("/handoff", endpoint="hub", methods=["POST"])]

    @property
    def hub_url(self) -> str:
        """What the copilot's hub settings point at."""
        return f"{self.url}/handoff"

    def hub_settings(self, **fields: Any) -> dict[str, Any]:
        return {"type": "generic", "url": self.hub_url, "secret_ref": self.secret_ref, **fields}

    @property
    def secret_value(self) -> str:
        return self.secret

    # --- agent events ----------------------------------------------------------------------

    def event(
        self,
        session: DeskSession,
        kind: AgentAction | str,
        *,
        agent: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        with self._lock:
            sequence = session.next_sequence
            session.next_sequence += 1
        name = agent or session.agent or self.agent_name
        return {
            "id": f"desk-{uuid.uuid4().hex}",
            "type": WIRE.get(kind, kind),  # neutral, or the wire name itself
            "conversation_id": session.conversation_id,
            "handoff_id": session.handoff_id,
            "sequence": sequence,
            "agent": {"id": name.lower(), "name": name},
            **fields,
        }

    def webhook_for(self, session: DeskSession) -> str:
        return session.reply_to or self.webhook(session.copilot_id)

    def deliver(
        self,
        session: DeskSession,
        event: dict[str, Any] | bytes,
        *,
        timestamp: int | None = None,
        secret: str | None = None,
        headers: dict[str, str] | None = None,
        retries: int | None = None,
    ) -> requests.Response:
        """POST one event to the copilot, signed (or as told), retrying 5xx like a hub does."""
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        key = self.secret if secret is None else secret
        sent = headers if headers is not None else signed_headers(key, body, timestamp=timestamp)
        return self.post_retrying(self.webhook_for(session), body, sent, retries)

    def tampered(self, session: DeskSession, event: dict[str, Any]) -> list[Tampered]:
        plain = {"Content-Type": "application/json"}
        body = json.dumps(event).encode()
        stranger = self.webhook_for(session).replace(session.copilot_id, "f" * 32)
        return [
            Tampered("wrong secret", self.deliver(session, event, secret="guessed"), 403),
            Tampered("unsigned", self.deliver(session, event, headers=plain), 401),
            Tampered("stale", self.deliver(session, event, timestamp=int(time.time()) - 3600), 403),
            Tampered(
                "not JSON", self.deliver(session, b'{"id": "x", "type": "agent.message"'), 400
            ),
            Tampered(
                "no conversation", self.deliver(session, {**event, "conversation_id": None}), 400
            ),
            Tampered("unknown copilot", requests.post(stranger, data=body, timeout=5), 401),
        ]

    # --- the hub's endpoint ----------------------------------------------------------------

    def _on_hub(self, request: Request) -> Response:
        """A call from the copilot: verify, de-duplicate, then apply it to its session."""
        status, answer = self._hub_call(request, request.get_data())
        self.record(request, status)
        return json_answer(answer, status)

    def _hub_call(self, request: Request, body: bytes) -> tuple[int, dict[str, Any]]:
        if self.fail_with is not None:
            return self.fail_with, {"error": "the desk is unavailable"}
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            verify_signature(headers, body, self.secret, time.time(), self.tolerance)
        except CopilotError as e:
            return e.status, {"error": e.message}
        try:
            event = json.loads(body)
            name, event_id = event["name"], event["id"]
            handoff_id, conversation_id = event["handoff_id"], event["conversation"]["id"]
        except (ValueError, KeyError, TypeError):
            return 400, {"error": "not a hand-off event"}
        with self._lock:
            if event_id in self._seen:
                self.duplicates += 1
                return 200, {"state": "accepted", "duplicate": True}
            if name == "handoff.initiate":
                if self.reject_with:
                    return 200, {"state": "failed", "reason": self.reject_with}
                self.add_session(_session_of(event, handoff_id, conversation_id))
            elif handoff_id not in self._sessions:
                return 404, {"error": "no such hand-off"}
            session = self._sessions[handoff_id]
            if name == "conversation.message":
                self.customer_said(session, event["text"], event["sequence"], event_id)
            elif name == "handoff.end":
                self.customer_ended(session)
            self._seen.add(event_id)
            self.received.append(event)
        return 200, {"state": "accepted"}


def _session_of(event: dict[str, Any], handoff_id: str, conversation_id: str) -> DeskSession:
    transcript: list[dict[str, Any]] = []
    for attachment in event.get("attachments") or []:
        if attachment.get("name") == "Transcript":
            transcript = list(attachment.get("content", {}).get("activities", []))
    return DeskSession(
        handoff_id=handoff_id,
        conversation_id=conversation_id,
        copilot_id=str(event.get("from", {}).get("id", "")),
        reply_to=event.get("reply_to"),
        initiate=event,
        context=dict(event.get("value") or {}),
        summary_text=event.get("summary"),
        unanswered_questions=list(event.get("unanswered_questions") or []),
        routing=dict(event.get("routing") or {}),
        transcript=transcript,
    )
