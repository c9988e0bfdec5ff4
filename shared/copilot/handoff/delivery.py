"""Outbound (customer -> hub): deliver a hand-off to its hub in order, whatever the hub's state.

The conversation's messages are the outbox. An SQS FIFO message (group = conversation) only says
"deliver what is new"; the consumer sends the hand-off's start, the customer's messages and its
end in sequence order from a cursor stored on the conversation, and moves the cursor after each
success. A hub outage delays delivery, never drops it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from copilot.admin.models import Copilot
from copilot.conflicts import one_at_a_time
from copilot.conversation.models import Conversation, ConversationState, Message
from copilot.errors import DuplicateError, HubRejectedError, HubUnavailableError
from copilot.handoff.changes import Change, failed, update
from copilot.handoff.config import HandoffConfig, hub_secret
from copilot.handoff.context import transcript
from copilot.handoff.models import (
    Handoff,
    HubCommand,
    HubCommandKind,
    HubLink,
    HubOutboxCursor,
    HubReceipt,
    HubSettings,
)
from copilot.ports import ConversationStore, CopilotRegistry, HubAdapter, HubOutbox, SecretStore

log = logging.getLogger(__name__)


def backoff_seconds(attempts: int, base: int, cap: int) -> int:
    """Seconds to wait after the ``attempts``-th failed delivery (exponential, capped)."""
    return int(min(cap, base * 2 ** max(0, attempts - 1)))


def redelivery_id(conversation_id: str) -> str:
    return f"{conversation_id}:retry:{uuid.uuid4().hex}"


class OutboxDelivery:
    def __init__(
        self,
        copilots: CopilotRegistry,
        conversations: ConversationStore,
        *,
        outbox: Callable[[], HubOutbox],
        secrets: Callable[[], SecretStore],
        hubs: Callable[[str], HubAdapter],
        config: HandoffConfig,
        started: Callable[[Copilot, str, str], None] | None = None,
    ) -> None:
        self._started = started  # the hub answered a start (pull hubs: the first pull job)
        self._copilots = copilots
        self._conversations = conversations
        self._outbox = outbox
        self._secrets = secrets
        self._hubs = hubs
        self._config = config

    def process_outbox(self, conversation_id: str, attempts: int, last_delivery: bool) -> None:
        """One outbox message. ``last_delivery``: the queue dead-letters it if this fails."""
        try:
            self.deliver(conversation_id, attempts)
        except HubUnavailableError:
            if not last_delivery:
                raise
            # The hub is still down: hand the work to a fresh message instead of the
            # dead-letter queue, so messages wait for the hub however long it is away.
            self._outbox().nudge(conversation_id, redelivery_id(conversation_id), attempts)

    def deliver(self, conversation_id: str, attempts: int) -> None:
        """Send what the hub has not had yet, in order. ``attempts``: deliveries of this work
        so far, this one included. Raises HubUnavailableError to be retried later.

        One delivery per conversation at a time: across processes the outbox's FIFO message
        group sees to it; within one (functions-framework serves many requests at once) this
        lock does, or two deliveries reading the same cursor would both send its messages."""
        with one_at_a_time(f"outbox#{conversation_id}"):
            self._deliver(conversation_id, attempts)

    def _deliver(self, conversation_id: str, attempts: int) -> None:
        conversation = self._conversations.get(conversation_id)
        copilot = self._copilots.get(conversation.copilot_id) if conversation else None
        if conversation is None or copilot is None:
            return  # gone (TTL, deleted copilot): nothing left to deliver
        while True:
            cursor = conversation.hub_outbox
            pending = self._conversations.messages_after(conversation_id, cursor.delivered_seq, 100)
            if not pending:
                return
            failed_start: tuple[Message, str] | None = None
            try:
                for message in pending:
                    try:
                        before = cursor
                        cursor = self._deliver_one(copilot, conversation, cursor, message)
                        if cursor.receipt is not None and cursor.started != before.started:
                            # The hub opened its conversation: keep its id and state (and the
                            # link from its id to ours) before anything else is sent.
                            conversation = self._save_cursor(
                                conversation_id, cursor, _link(copilot, conversation_id, cursor)
                            )
                            if self._started is not None and cursor.started is not None:
                                self._started(copilot, conversation_id, cursor.started)
                    except HubRejectedError as e:
                        if message.event != "handoff_requested":
                            log.error("hub refused %s #%s: %s", conversation_id, message.seq, e)
                            cursor = cursor.model_copy(update={"delivered_seq": message.seq})
                            continue
                        failed_start = (message, e.reason)
                        break
                    except HubUnavailableError:
                        if (
                            message.event != "handoff_requested"
                            or attempts < self._config.max_attempts
                        ):
                            raise
                        failed_start = (message, "unreachable")
                        break
            finally:
                if cursor != conversation.hub_outbox:
                    conversation = self._save_cursor(conversation_id, cursor)
            if failed_start is not None:
                conversation = self._fail_start(copilot, conversation_id, *failed_start)

    def _deliver_one(
        self,
        copilot: Copilot,
        conversation: Conversation,
        cursor: HubOutboxCursor,
        message: Message,
    ) -> HubOutboxCursor:
        hub, hid = copilot.hub, message.handoff_id
        started, receipt = cursor.started, cursor.receipt
        if hid is not None and hub is not None:
            if message.event == "handoff_requested":
                current = conversation.handoff
                if current is None or current.handoff_id != hid:
                    # Requested after our read of the conversation: read it again (the request
                    # and its hand-off were written together, so this read has it).
                    fresh = self._conversations.get(conversation.conversation_id)
                    current = fresh.handoff if fresh else None
                if current is not None and current.handoff_id == hid and not current.closed:
                    receipt = self._send(hub, self._start_command(copilot, current, message))
                    started = hid
                # else: cancelled (or failed) before it reached the hub: never start it.
            elif message.role == "customer" and started == hid:
                command = self._command(
                    "message", copilot, conversation, message, receipt, text=message.text
                )
                receipt = self._send(hub, command) or receipt
            elif message.event == "handoff_cancelled" and started == hid:
                command = self._command(
                    "end", copilot, conversation, message, receipt, reason="customer_ended"
                )
                self._send(hub, command)
                started, receipt = None, None
            elif message.event in ("handoff_ended", "handoff_failed") and started == hid:
                started, receipt = None, None  # the hub closed it: nothing to send
        return HubOutboxCursor(delivered_seq=message.seq, started=started, receipt=receipt)

    def _start_command(self, copilot: Copilot, handoff: Handoff, notice: Message) -> HubCommand:
        cid = handoff.context.conversation_id
        count = notice.seq - handoff.transcript_after
        earlier = self._conversations.messages_after(cid, handoff.transcript_after, count)
        return HubCommand(
            kind="start",
            event_id=f"{cid}:{notice.seq}",
            sequence=notice.seq,
            conversation_id=cid,
            copilot_id=copilot.copilot_id,
            handoff_id=handoff.handoff_id,
            context=handoff.context,
            transcript=transcript([m for m in earlier if m.seq < notice.seq]),
            reply_to=self._reply_to(copilot),
        )

    def _command(
        self,
        kind: HubCommandKind,
        copilot: Copilot,
        conversation: Conversation,
        message: Message,
        receipt: HubReceipt | None,
        **fields: str,
    ) -> HubCommand:
        return HubCommand(
            kind=kind,
            event_id=f"{conversation.conversation_id}:{message.seq}",
            sequence=message.seq,
            conversation_id=conversation.conversation_id,
            copilot_id=copilot.copilot_id,
            handoff_id=message.handoff_id or "",
            reply_to=self._reply_to(copilot),
            receipt=receipt,
            **fields,
        )

    def _reply_to(self, copilot: Copilot) -> str | None:
        base = self._config.reply_to
        if not base or copilot.hub is None:
            return None
        return f"{base.rstrip('/')}/hooks/{copilot.hub.type}/{copilot.copilot_id}"

    def _send(self, hub: HubSettings, command: HubCommand) -> HubReceipt | None:
        secret = hub_secret(self._secrets(), hub, HubUnavailableError)
        return self._hubs(hub.type).send(hub, secret, command)

    def _save_cursor(
        self, conversation_id: str, cursor: HubOutboxCursor, link: HubLink | None = None
    ) -> Conversation:
        links = [link] if link else []

        def change(conversation: Conversation) -> Change | None:
            if conversation.hub_outbox.delivered_seq >= cursor.delivered_seq:
                return None  # another delivery got further: keep its cursor
            return Change(conversation.model_copy(update={"hub_outbox": cursor}), links=links)

        try:
            stored, _ = update(self._conversations, conversation_id, change)
        except DuplicateError:
            # The hub gave an id already linked to another conversation: a broken hub. Its
            # webhooks for that id keep reaching the first conversation; delivery goes on.
            log.error("hub id of %s is linked to another conversation", conversation_id)
            links.clear()
            stored, _ = update(self._conversations, conversation_id, change)
        return stored

    def _fail_start(
        self, copilot: Copilot, conversation_id: str, notice: Message, reason: str
    ) -> Conversation:
        log.warning(
            "hand-off %s of %s failed to start: %s", notice.handoff_id, conversation_id, reason
        )

        def change(conversation: Conversation) -> Change:
            cursor = conversation.hub_outbox.model_copy(
                update={"delivered_seq": max(conversation.hub_outbox.delivered_seq, notice.seq)}
            )
            current = conversation.model_copy(update={"hub_outbox": cursor})
            handoff = current.handoff
            if (
                handoff is None
                or handoff.handoff_id != notice.handoff_id
                or handoff.closed
                or current.state is not ConversationState.HANDOFF_REQUESTED
            ):
                return Change(current)
            ended, messages = failed(current, copilot, handoff, reason, current.last_seq)
            return Change(ended, messages)

        stored, _ = update(self._conversations, conversation_id, change)
        return stored


def _link(copilot: Copilot, conversation_id: str, cursor: HubOutboxCursor) -> HubLink | None:
    """The hub's id of the started hand-off -> ours (written with the cursor that holds it)."""
    if copilot.hub is None or cursor.receipt is None or cursor.started is None:
        return None
    key = HubLink.key_of(copilot.hub.type, copilot.copilot_id, cursor.receipt.hub_conversation_id)
    return HubLink(key=key, conversation_id=conversation_id, handoff_id=cursor.started)
