"""Conversations: start, customer turns, polling; every write is a conditional append."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable

from copilot.admin.lookup import require_copilot
from copilot.admin.models import Copilot
from copilot.conflicts import retry_on_conflict
from copilot.conversation.dialog import Dialog, Reply
from copilot.conversation.models import (
    Conversation,
    ConversationState,
    DialogContext,
    Message,
    MessagesPage,
    StartConversationRequest,
    StartConversationResponse,
    TurnResponse,
)
from copilot.errors import ConflictError, NotFoundError, UnauthorizedError
from copilot.handoff.changes import ACTIVE
from copilot.handoff.service import HandoffService
from copilot.knowledge.answer import KnowledgeAnswerer
from copilot.knowledge.models import Answer
from copilot.ports import ConversationStore, CopilotRegistry
from copilot.schema import new_id, utcnow

HISTORY_TURNS = 12  # messages of context given to follow-up handling


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ConversationService:
    def __init__(
        self,
        copilots: CopilotRegistry,
        conversations: ConversationStore,
        answerer: Callable[[], KnowledgeAnswerer],
        handoff: HandoffService | None = None,
        prewarm: Callable[[], None] | None = None,
    ) -> None:
        self._copilots = copilots
        # Starts loading the models in the background (once per process): a cold knowledge
        # turn then overlaps the model load with its storage round trips.
        self._prewarm = prewarm or (lambda: None)
        self._conversations = conversations
        self._answerer = answerer  # built on first knowledge question: keeps cold start light
        self._handoff = handoff  # None: no live agents, escalation gives the escalate link

    def start(
        self, copilot_id: str, request: StartConversationRequest | None = None
    ) -> StartConversationResponse:
        self._prewarm()
        copilot = require_copilot(self._copilots, copilot_id)
        token = secrets.token_urlsafe(32)
        request = request or StartConversationRequest()
        conversation = Conversation(
            conversation_id=new_id(),
            copilot_id=copilot.copilot_id,
            token_hash=hash_token(token),
            context=DialogContext(locale=request.locale, variables=request.variables),
        )
        first = Message(seq=1, role="copilot", text=copilot.messages.conversation_start)
        stored = self._conversations.create(conversation, [first])
        return StartConversationResponse(
            conversation_id=stored.conversation_id,
            token=token,
            state=stored.state,
            messages=[first],
        )

    def authorize(self, conversation_id: str, token: str | None) -> Conversation:
        if not token:
            raise UnauthorizedError(
                "send the conversation token as 'Authorization: Bearer <token>'"
            )
        conversation = self._conversations.get(conversation_id)
        # One answer for "no such conversation" and "not yours": a token holder learns nothing
        # about which other conversation ids exist.
        if conversation is None or not hmac.compare_digest(
            conversation.token_hash, hash_token(token)
        ):
            raise NotFoundError("no such conversation for this token")
        return conversation

    def post(self, conversation_id: str, token: str | None, text: str) -> TurnResponse:
        self._prewarm()
        conversation = self.authorize(conversation_id, token)
        copilot = require_copilot(self._copilots, conversation.copilot_id)
        answers: dict[str, Answer | None] = {}  # knowledge answers survive a retried turn

        def answer(question: str) -> Answer | None:
            if question not in answers:
                # History is read only if the question turns out to be a follow-up.
                answers[question] = self._answerer().answer(
                    copilot, question, lambda: self._history(conversation)
                )
            return answers[question]

        first = True

        def turn() -> tuple[TurnResponse, Conversation, bool]:
            nonlocal conversation, first
            if not first:
                # Another writer appended first: run the turn again on the fresh state, so
                # nothing is lost or duplicated.
                fresh = self._conversations.get(conversation_id)
                if fresh is None:
                    raise NotFoundError("no such conversation")
                conversation = fresh
            first = False
            return self._turn(copilot, conversation, text, answer)

        response, stored, nudge = retry_on_conflict(turn, what="the conversation")
        if nudge and self._handoff is not None:
            self._handoff.nudge(stored)  # the hub has something new: the outbox delivers it
        return response

    def _turn(
        self,
        copilot: Copilot,
        conversation: Conversation,
        text: str,
        answer: Callable[[str], Answer | None],
    ) -> tuple[TurnResponse, Conversation, bool]:
        """The turn's messages, written; and whether the hub has something new."""
        seq = conversation.last_seq
        customer = Message(seq=seq + 1, role="customer", text=text)
        handoff = self._handoff
        if handoff is not None and conversation.state in ACTIVE and conversation.handoff:
            messages, updated = handoff.forward(conversation, customer)
            stored = self._conversations.append(updated, messages)
            return self._response(stored, messages), stored, True
        handoff_request = None
        if conversation.state is ConversationState.ENDED:
            replies = [Reply("This conversation has ended. Please start a new one.")]
            context = conversation.context
        else:
            can_hand_off = handoff is not None and handoff.available(copilot)
            dialog = Dialog(copilot, answer, can_hand_off=can_hand_off)
            outcome = dialog.respond(text, conversation.context)
            replies, context = outcome.replies, outcome.context
            handoff_request = outcome.handoff
            if outcome.reset:
                context.history_start_seq = seq + 1 + len(replies)
        messages = [customer] + [
            Message(
                seq=seq + 2 + i,
                role="copilot",
                text=r.text,
                topic=r.topic,
                citations=r.citations,
                suggestions=r.suggestions,
            )
            for i, r in enumerate(replies)
        ]
        updated = conversation.model_copy(update={"context": context, "updated_at": utcnow()})
        if handoff_request is not None and handoff is not None:
            notice, updated = handoff.open(copilot, updated, handoff_request, messages)
            messages += notice
        stored = self._conversations.append(updated, messages)
        return self._response(stored, messages), stored, handoff_request is not None

    @staticmethod
    def _response(stored: Conversation, messages: list[Message]) -> TurnResponse:
        return TurnResponse(
            conversation_id=stored.conversation_id, state=stored.state, messages=messages
        )

    def _history(self, conversation: Conversation) -> list[Message]:
        """Earlier messages since the last start-over, oldest first (for follow-up questions)."""
        recent = self._conversations.recent_messages(conversation.conversation_id, HISTORY_TURNS)
        return [m for m in recent if m.seq > conversation.context.history_start_seq]

    def messages(
        self, conversation_id: str, token: str | None, after: int, limit: int
    ) -> MessagesPage:
        conversation = self.authorize(conversation_id, token)
        if self._handoff is not None and self._handoff.due(conversation):
            self._handoff.flush(conversation_id)  # agent events held for a gap: their wait is over
            conversation = self.authorize(conversation_id, token)
        page = self._conversations.messages_after(conversation_id, after, limit)
        return MessagesPage(
            conversation_id=conversation_id,
            state=conversation.state,
            last_seq=conversation.last_seq,
            messages=page,
        )

    def cancel_handoff(self, conversation_id: str, token: str | None) -> TurnResponse:
        self.authorize(conversation_id, token)
        if self._handoff is None:
            raise ConflictError("there is no hand-off to cancel")
        return self._handoff.cancel(conversation_id)
