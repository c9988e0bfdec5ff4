"""Conversations: start, customer turns, polling; every write is a conditional append."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import TypeVar

from pydantic import BaseModel

from copilot.admin.lookup import require_copilot
from copilot.admin.models import Copilot
from copilot.analytics.events import AnalyticsEvent, from_messages
from copilot.conflicts import WriteConflict, retry_on_conflict
from copilot.conversation import recording
from copilot.conversation.dialog import AnswerFn, Dialog, Reply, TurnOutcome
from copilot.conversation.idempotency import HEADER, Done, IdempotentRequest
from copilot.conversation.models import (
    Conversation,
    ConversationState,
    DialogContext,
    FeedbackRequest,
    Message,
    MessagesPage,
    Recorded,
    StartConversationRequest,
    StartConversationResponse,
    SurveyRequest,
    TurnResponse,
)
from copilot.conversation.survey import SurveyAnswer
from copilot.errors import (
    BadRequestError,
    ConflictError,
    DuplicateError,
    NotFoundError,
    UnauthorizedError,
    UnavailableError,
)
from copilot.handoff.changes import ACTIVE
from copilot.handoff.service import HandoffService
from copilot.knowledge.answer import Consulted, KnowledgeAnswerer
from copilot.ports import ConversationStore, CopilotRegistry
from copilot.schema import new_id, utcnow

HISTORY_TURNS = 12  # messages of context given to follow-up handling
# A poll re-nudges the hub outbox when it is behind and was last nudged this long ago: longer
# than a normal delivery takes, short enough that a message saved while SQS was down reaches
# the agent soon after SQS is back. It doubles with each re-nudge of the same backlog (up to
# RENUDGE_MAX), so a long hub outage costs few extra writes and queue messages.
RENUDGE_AFTER = timedelta(seconds=10)
RENUDGE_MAX = timedelta(minutes=5)

# A long-poll re-reads the conversation's meta item (one consistent GetItem) at these pauses,
# then at the last one until its wait is over: the first reads come soon after the poll starts
# (an agent often answers within a second of the customer), the later ones cost 4 reads a
# second at most and add at most 250 ms to a message's delivery (docs/realtime.md).
WAIT_PAUSES = (0.05, 0.1, 0.15, 0.2, 0.25)

log = logging.getLogger(__name__)
R = TypeVar("R", bound=BaseModel)


def _outbox_stalled(conversation: Conversation) -> bool:
    """The hub's outbox is behind and was last told long enough ago to tell it again (read
    from the conversation alone: a normal poll costs nothing more)."""
    if conversation.outbox_due_seq <= conversation.hub_outbox.delivered_seq:
        return False
    told = conversation.outbox_nudged_at
    wait = min(RENUDGE_MAX, RENUDGE_AFTER * 2 ** min(conversation.outbox_renudges, 16))
    return told is None or utcnow() - told >= wait


def _pauses() -> Iterator[float]:
    yield from WAIT_PAUSES
    while True:
        yield WAIT_PAUSES[-1]


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
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._copilots = copilots
        self._clock, self._sleep = clock, sleep  # a long-poll's wait (injected by unit tests)
        # Starts loading the models in the background (once per process): a cold knowledge
        # turn then overlaps the model load with its storage round trips.
        self._prewarm = prewarm or (lambda: None)
        self._conversations = conversations
        self._answerer = answerer  # built on first knowledge question: keeps cold start light
        self._handoff = handoff  # None: no live agents, escalation gives the escalate link

    def start(
        self, copilot_id: str, request: StartConversationRequest | None = None
    ) -> StartConversationResponse:
        return self.start_once(copilot_id, request, None).response

    def start_once(
        self,
        copilot_id: str,
        request: StartConversationRequest | None,
        idempotency_key: str | None,
    ) -> Done[StartConversationResponse]:
        """A new conversation. With ``idempotency_key``, a retry of the same start (same key,
        copilot and request) within the window gets the same conversation and token back."""
        self._prewarm()
        copilot = require_copilot(self._copilots, copilot_id)
        request = request or StartConversationRequest()
        once = None
        if idempotency_key is not None:
            payload = json.dumps(request.model_dump(mode="json"), sort_keys=True)
            once = IdempotentRequest(f"start:{copilot.copilot_id}", idempotency_key, payload)
            if (replayed := self._replay(once, StartConversationResponse)) is not None:
                return replayed
        token = secrets.token_urlsafe(32)
        conversation = Conversation(
            conversation_id=new_id(),
            copilot_id=copilot.copilot_id,
            token_hash=hash_token(token),
            context=DialogContext(locale=request.locale, variables=request.variables),
        )
        first = Message(seq=1, role="copilot", text=copilot.messages.conversation_start)
        response = StartConversationResponse(
            conversation_id=conversation.conversation_id,
            token=token,
            state=conversation.state,
            messages=[first],
        )
        started = [recording.started_event(conversation)]
        if once is None:
            self._conversations.create(conversation, [first], events=started)
            return Done(response)
        try:
            outcome = once.outcome(201, response, secret="token")
            self._conversations.create(conversation, [first], outcome=outcome, events=started)
        except DuplicateError:
            return self._replay_winner(once, StartConversationResponse)
        return Done(response)

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
        return self.post_once(conversation_id, token, text, None).response

    def post_once(
        self,
        conversation_id: str,
        token: str | None,
        text: str,
        idempotency_key: str | None,
        gate: Callable[[], None] | None = None,
        client_activity_id: str | None = None,
    ) -> Done[TurnResponse]:
        """The customer's message and the replies to it. With ``idempotency_key``, a retry of
        the same message within the window gets the first answer back; nothing is stored or
        run again, even when the retry races the first request (one write wins). ``gate``
        (the rate limits' verdict, being fetched meanwhile) is called after the first reads
        and before the turn's costly work: it raises to refuse the request.
        ``client_activity_id`` is kept on the customer's message (a Direct Line client
        matches its echo by it)."""
        self._prewarm()
        began = time.perf_counter()
        conversation = self.authorize(conversation_id, token)
        once = None
        if idempotency_key is not None:
            once = IdempotentRequest(f"post:{conversation_id}", idempotency_key, text)
            if (replayed := self._replay(once, TurnResponse)) is not None:
                return replayed
        copilot = require_copilot(self._copilots, conversation.copilot_id)
        if gate is not None:
            gate()
        # Knowledge answers survive a retried turn.
        answers: dict[tuple[str, tuple[str, ...], bool], Consulted] = {}

        def answer(question: str, subjects: Sequence[str], ask_which: bool) -> Consulted:
            key = (question, tuple(subjects), ask_which)
            if key not in answers:
                # History is read only if the question turns out to be a follow-up.
                answers[key] = self._answerer().consult(
                    copilot,
                    question,
                    lambda: self._history(conversation),
                    subjects,
                    ask_which=ask_which,
                )
            return answers[key]

        first = True

        def turn() -> tuple[Done[TurnResponse], Conversation | None]:
            nonlocal conversation, first
            if not first:
                # Another writer appended first (maybe a retry of this very request): run the
                # turn again on the fresh state, so nothing is lost or duplicated.
                if once is not None and (replayed := self._replay(once, TurnResponse)):
                    return replayed, None
                fresh = self._conversations.get(conversation_id)
                if fresh is None:
                    raise NotFoundError("no such conversation")
                conversation = fresh
            first = False
            messages, updated, nudge, done = self._turn(
                copilot, conversation, text, answer, client_activity_id
            )
            events = self._turn_events(copilot, conversation, updated, messages, done, began)
            if nudge:
                # The hub has something new; the nudge below tells the outbox, and a customer
                # poll tells it again should that nudge be lost.
                updated = updated.model_copy(
                    update={
                        "outbox_due_seq": messages[-1].seq,
                        "outbox_nudged_at": utcnow(),
                        "outbox_renudges": 0,
                    }
                )
            response = TurnResponse(
                conversation_id=conversation_id, state=updated.state, messages=messages
            )
            if once is None:
                stored = self._conversations.append(updated, messages, events=events)
                return Done(response), stored if nudge else None
            try:
                outcome = once.outcome(200, response)
                stored = self._conversations.append(
                    updated, messages, outcome=outcome, events=events
                )
            except DuplicateError:
                return self._replay_winner(once, TurnResponse), None
            return Done(response), stored if nudge else None

        done, to_nudge = retry_on_conflict(turn, what="the conversation", key=conversation_id)
        if to_nudge is not None:
            self._nudge(to_nudge)
        return done

    def _replay(self, once: IdempotentRequest, model: type[R]) -> Done[R] | None:
        stored = self._conversations.outcome(once.claim)
        return once.replay(stored, model) if stored is not None else None

    def _replay_winner(self, once: IdempotentRequest, model: type[R]) -> Done[R]:
        """After losing the write to a concurrent request with the same key: its answer (it
        was written in the same transaction as its messages, so it is there to read)."""
        replayed = self._replay(once, model)
        if replayed is None:  # it expired in between: the client may send it again
            raise ConflictError(f"a request with this {HEADER} was just answered; try again")
        return replayed

    def _nudge(self, conversation: Conversation) -> None:
        """Tell the outbox; if it is down, the message is saved all the same and the
        customer's next poll after RENUDGE_AFTER tells it again, so this never fails the
        request (a 5xx would invite the client to send the message twice)."""
        assert self._handoff is not None
        try:
            self._handoff.nudge(conversation)
        except UnavailableError:
            log.warning(
                "hub outbox unavailable for %s; a customer poll will nudge it again",
                conversation.conversation_id,
            )

    def _turn_events(
        self,
        copilot: Copilot,
        before: Conversation,
        after: Conversation,
        messages: list[Message],
        done: TurnOutcome | None,
        began: float,
    ) -> list[AnalyticsEvent]:
        """What the turn records for analytics (copilot.conversation.recording)."""
        latency_ms = (time.perf_counter() - began) * 1000
        events = recording.turn_events(
            copilot,
            before,
            messages[0],
            messages[1:],
            confidence=done.confidence if done is not None else None,
            latency_ms=latency_ms,
            forwarded=done is None,
        )
        if done is not None and done.survey is not None:
            events += recording.survey_events(copilot, before, messages[0], done.survey)
        return events + from_messages(before, after, messages)

    def _turn(
        self,
        copilot: Copilot,
        conversation: Conversation,
        text: str,
        answer: AnswerFn,
        client_activity_id: str | None = None,
    ) -> tuple[list[Message], Conversation, bool, TurnOutcome | None]:
        """The turn's messages and the conversation after them (to write together); whether
        the hub has something new; and what the dialog made of it (None: for the agent)."""
        seq = conversation.last_seq
        customer = Message(
            seq=seq + 1, role="customer", text=text, client_activity_id=client_activity_id
        )
        handoff = self._handoff
        if handoff is not None and conversation.state in ACTIVE and conversation.handoff:
            messages, updated = handoff.forward(conversation, customer)
            return messages, updated, True, None
        handoff_request = None
        if conversation.state is ConversationState.ENDED:
            replies = [Reply("This conversation has ended. Please start a new one.")]
            context = conversation.context
            outcome = TurnOutcome(replies, context)
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
        # A request inside the hand-off interval left the conversation with the copilot.
        nudge = handoff_request is not None and updated.state in ACTIVE
        return messages, updated, nudge, outcome

    def _history(self, conversation: Conversation) -> list[Message]:
        """Earlier messages since the last start-over, oldest first (for follow-up questions)."""
        recent = self._conversations.recent_messages(conversation.conversation_id, HISTORY_TURNS)
        return [m for m in recent if m.seq > conversation.context.history_start_seq]

    def messages(
        self, conversation_id: str, token: str | None, after: int, limit: int, wait: float = 0
    ) -> MessagesPage:
        """Messages after ``after``. With ``wait`` (seconds), a long-poll: answers as soon as
        there is one, or with an empty page when the wait is over. While it waits it reads the
        conversation's meta item only (its ``last_seq``), and queries messages once there are
        some; each read does what a short poll does (held agent events, a stalled outbox)."""
        deadline = self._clock() + wait
        pauses = _pauses()
        conversation = self._settle(conversation_id, token)
        while conversation.last_seq <= after:
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            self._sleep(min(next(pauses), remaining))
            conversation = self._settle(conversation_id, token)
        page = (
            self._conversations.messages_after(conversation_id, after, limit)
            if conversation.last_seq > after
            else []
        )
        # A write after the read above may already be in the query: leave it to the next poll,
        # so the page's state is the state after its last message (not an earlier one).
        page = [m for m in page if m.seq <= conversation.last_seq]
        return MessagesPage(
            conversation_id=conversation_id,
            state=conversation.state,
            last_seq=conversation.last_seq,
            messages=page,
        )

    def _settle(self, conversation_id: str, token: str | None) -> Conversation:
        """The conversation after what a poll applies: agent events held for a gap whose wait is
        over, and a re-nudge of a stalled hub outbox."""
        conversation = self.authorize(conversation_id, token)
        if self._handoff is not None and self._handoff.poll(conversation):
            # The hub told what its webhook leaves out (Genesys: the agent, the end).
            conversation = self.authorize(conversation_id, token)
        if self._handoff is not None:
            self._handoff.watch_pull(conversation)  # hubs without webhooks: a silent pull
        if self._handoff is not None and self._handoff.due(conversation):
            self._handoff.flush(conversation_id)  # agent events held for a gap: their wait is over
            conversation = self.authorize(conversation_id, token)
        if self._handoff is not None and _outbox_stalled(conversation):
            conversation = self._renudge(conversation)
        return conversation

    def _renudge(self, conversation: Conversation) -> Conversation:
        # Noted first (a conditional write, so concurrent polls nudge once), then sent: if the
        # outbox is still down, the next try comes later (see RENUDGE_AFTER).
        noted = conversation.model_copy(
            update={
                "outbox_nudged_at": utcnow(),
                "outbox_renudges": conversation.outbox_renudges + 1,
            }
        )
        try:
            stored = self._conversations.append(noted, [])
        except WriteConflict:
            return conversation  # another writer was first; the next poll looks again
        log.info("re-nudging the hub outbox of %s", conversation.conversation_id)
        self._nudge(stored)
        return stored

    # --- what the customer says of the copilot ---------------------------------------------

    def feedback(
        self, conversation_id: str, token: str | None, seq: int, request: FeedbackRequest
    ) -> Recorded:
        """Thumbs up or down on the copilot's answer ``seq``; the last one given counts."""
        conversation = self.authorize(conversation_id, token)
        found = self._conversations.messages_after(conversation_id, seq - 1, 1)
        if not found or found[0].seq != seq:
            raise NotFoundError(f"no message {seq} in this conversation")
        if found[0].role != "copilot":
            raise BadRequestError(
                f"message {seq} is not the copilot's: feedback is on the copilot's answers",
                field="seq",
            )
        copilot = require_copilot(self._copilots, conversation.copilot_id)
        rating = 1 if request.rating == "up" else -1
        events = recording.feedback_events(copilot, conversation, found[0], rating, request.comment)
        self._record(conversation_id, lambda c: (c, events))
        return Recorded(conversation_id=conversation_id, recorded="feedback", seq=seq)

    def survey(self, conversation_id: str, token: str | None, request: SurveyRequest) -> Recorded:
        """The end-of-conversation survey, answered from a client's own form (stars): a
        survey the copilot asked in the chat is answered too."""
        conversation = self.authorize(conversation_id, token)
        copilot = require_copilot(self._copilots, conversation.copilot_id)
        answer = SurveyAnswer(request.score, request.comment)

        def change(current: Conversation) -> tuple[Conversation, list[AnalyticsEvent]]:
            context = current.context.model_copy(
                update={
                    "surveyed": True,
                    "pending": None
                    if current.context.pending == "survey"
                    else current.context.pending,
                }
            )
            events = recording.survey_events(copilot, current, None, answer)
            return current.model_copy(update={"context": context}), events

        self._record(conversation_id, change)
        return Recorded(conversation_id=conversation_id, recorded="survey")

    def _record(
        self,
        conversation_id: str,
        change: Callable[[Conversation], tuple[Conversation, list[AnalyticsEvent]]],
    ) -> None:
        """Events written with the conversation (a conditional write, retried on a race)."""

        def attempt() -> None:
            current = self._conversations.get(conversation_id)
            if current is None:
                raise NotFoundError("no such conversation")
            updated, events = change(current)
            self._conversations.append(updated, [], events=events)

        retry_on_conflict(attempt, what="the conversation", key=conversation_id)

    def cancel_handoff(self, conversation_id: str, token: str | None) -> TurnResponse:
        self.authorize(conversation_id, token)
        if self._handoff is None:
            raise ConflictError("there is no hand-off to cancel")
        return self._handoff.cancel(conversation_id)
