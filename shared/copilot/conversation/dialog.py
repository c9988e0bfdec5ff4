"""The dialog: decide the copilot's replies to one customer message.

Pure logic over the copilot's configuration and the conversation's context; knowledge answers
come through a callable so the dialog can be tested without an index.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from copilot.admin.models import Copilot
from copilot.conversation import topics as t
from copilot.conversation.models import DialogContext
from copilot.conversation.survey import (
    ASK,
    SCORES,
    SURVEY_TOPIC,
    THANKS,
    SurveyAnswer,
    parse_answer,
)
from copilot.knowledge.answer import Consulted
from copilot.knowledge.models import Citation
from copilot.knowledge.subjects import name_words
from copilot.observability import timed

CONFIRM_START_OVER = "Are you sure you want to start over? Everything so far will be cleared."
CARRY_ON = "OK, let's carry on. What else can I help you with?"
OFFER_HANDOFF = "Would you like me to connect you with a person?"
KNOWLEDGE = "Knowledge"
NO_MATCH = "No match"
MULTIPLE_TOPICS = "Multiple topics matched"

# (question, the subjects the conversation is about, whether to ask which one when several
# fit): copilot.knowledge.answer.KnowledgeAnswerer.consult
AnswerFn = Callable[[str, Sequence[str], bool], Consulted]


@dataclass
class Reply:
    text: str
    topic: str | None = None
    citations: list[Citation] = field(default_factory=list)
    suggestions: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class HandoffRequest:
    """The customer should get a person: the service starts a hand-off after the replies."""

    topic: str
    agent_note: str | None = None


@dataclass
class TurnOutcome:
    replies: list[Reply]
    context: DialogContext
    reset: bool = False
    handoff: HandoffRequest | None = None
    survey: SurveyAnswer | None = None  # the customer answered the survey
    confidence: float | None = None  # the answer gate's, when knowledge was consulted


class Dialog:
    def __init__(self, copilot: Copilot, answer: AnswerFn, *, can_hand_off: bool = False) -> None:
        """``can_hand_off``: a hub is configured and open now; otherwise escalating gives the
        escalate link, so the customer never meets a dead end."""
        self._copilot = copilot
        self._answer = answer
        self._messages = copilot.messages
        self._can_hand_off = can_hand_off

    def respond(self, text: str, context: DialogContext) -> TurnOutcome:
        ctx = context.model_copy(deep=True)
        if ctx.pending == "survey":
            ctx.pending = None
            answer = parse_answer(text)
            if answer is not None:
                thanks = Reply(THANKS, topic=SURVEY_TOPIC)
                return TurnOutcome([thanks], ctx, survey=answer)
            # Anything else: the customer moved on; their message is handled as any other.
        if ctx.pending == "confirm_start_over":
            ctx.pending = None
            if t.is_yes(text):
                return self._start_over(ctx)
            if t.is_no(text):
                return TurnOutcome([Reply(CARRY_ON, topic=t.START_OVER)], ctx)
            # Anything else: the customer moved on; treat it as a fresh message.
        if ctx.pending == "confirm_handoff":
            ctx.pending = None
            if t.is_yes(text):
                self._visit(ctx, t.ESCALATE)
                return self._escalate(ctx, t.ESCALATE)
            if t.is_no(text):
                return TurnOutcome([Reply(CARRY_ON, topic=t.ESCALATE)], ctx)
        if ctx.pending == "choose_topic":
            choices, original = ctx.choices, ctx.pending_text or text
            ctx.pending, ctx.choices, ctx.pending_text = None, [], None
            picked = t.pick_choice(text, [*choices, t.NONE_OF_THESE])
            if picked == t.NONE_OF_THESE:
                return self._knowledge(original, ctx)
            if picked is not None:
                return self._run_custom(picked, ctx)
        if ctx.pending == "choose_subject":
            choices, original = ctx.choices, ctx.pending_text or text
            ctx.pending, ctx.choices, ctx.pending_text = None, [], None
            picked = t.pick_choice(text, [*choices, t.NONE_OF_THESE])
            if picked == t.NONE_OF_THESE:
                return self._knowledge(original, ctx, ask_which=False)
            if picked is not None:
                ctx.subjects = [" ".join(name_words(picked))]
                return self._knowledge(original, ctx, ask_which=False)
        return self._route(text, ctx)

    def _route(self, text: str, ctx: DialogContext) -> TurnOutcome:
        with timed("topics"):
            system = t.match_system(text)
            matches = [] if system is not None else t.match_custom(text, self._copilot.topics)
        if system is not None:
            return self._run_system(system.name, ctx)
        if len(matches) == 1:
            return self._run_custom(matches[0].name, ctx)
        if len(matches) > 1:
            names = [m.name for m in matches]
            ctx.pending, ctx.choices, ctx.pending_text = "choose_topic", names, text
            self._visit(ctx, MULTIPLE_TOPICS)
            return TurnOutcome([self._choices_reply(names)], ctx)
        return self._knowledge(text, ctx)

    def _choices_reply(self, names: Sequence[str]) -> Reply:
        options = [*names, t.NONE_OF_THESE]
        listing = "\n".join(f"{i}. {name}" for i, name in enumerate(options, 1))
        return Reply(
            f"{self._messages.multiple_topics_matched}\n{listing}",
            topic=MULTIPLE_TOPICS,
            suggestions=options,
        )

    def _run_system(self, name: str, ctx: DialogContext) -> TurnOutcome:
        self._visit(ctx, name)
        ctx.no_match_count = 0
        m = self._messages
        if name == t.GREETING:
            return TurnOutcome([Reply(m.greeting, topic=name)], ctx)
        if name == t.THANK_YOU:
            return self._with_survey(TurnOutcome([Reply(m.thank_you, topic=name)], ctx))
        if name == t.GOODBYE:
            return self._with_survey(TurnOutcome([Reply(m.goodbye, topic=name)], ctx))
        if name == t.START_OVER:
            ctx.pending = "confirm_start_over"
            return TurnOutcome(
                [Reply(CONFIRM_START_OVER, topic=name, suggestions=["Yes", "No"])], ctx
            )
        return self._escalate(ctx, t.ESCALATE)

    def _with_survey(self, outcome: TurnOutcome) -> TurnOutcome:
        """The survey after thanks or goodbye: once per conversation, if the copilot asks."""
        ctx = outcome.context
        if self._copilot.analytics.csat_survey and not ctx.surveyed:
            ctx.pending, ctx.surveyed = "survey", True
            ask = Reply(ASK, topic=SURVEY_TOPIC, suggestions=list(SCORES))
            outcome.replies.append(ask)
        return outcome

    def _run_custom(self, name: str, ctx: DialogContext) -> TurnOutcome:
        topic = next(tp for tp in self._copilot.topics if tp.name == name)
        self._visit(ctx, name)
        ctx.no_match_count = 0
        reply = Reply(topic.response, topic=name)
        if topic.handoff:
            return self._escalate(ctx, name, topic.agent_note, [reply])
        return TurnOutcome([reply], ctx)

    def _escalate(
        self,
        ctx: DialogContext,
        topic: str,
        agent_note: str | None = None,
        replies: list[Reply] | None = None,
    ) -> TurnOutcome:
        replies = list(replies or [])
        if self._can_hand_off:
            return TurnOutcome(replies, ctx, handoff=HandoffRequest(topic, agent_note))
        replies.append(Reply(self._messages.escalate_link, topic=t.ESCALATE))
        return TurnOutcome(replies, ctx)

    def _knowledge(self, text: str, ctx: DialogContext, ask_which: bool = True) -> TurnOutcome:
        consulted = self._answer(text, ctx.subjects, ask_which)
        ctx.subjects = consulted.subjects
        confidence = consulted.confidence
        if consulted.choices:
            # Alike entries of several places or products fit: ask which one, as for topics.
            ctx.pending, ctx.choices, ctx.pending_text = "choose_subject", consulted.choices, text
            self._visit(ctx, MULTIPLE_TOPICS)
            reply = self._choices_reply(consulted.choices)
            return TurnOutcome([reply], ctx, confidence=confidence)
        answer = consulted.answer
        if answer is not None:
            self._visit(ctx, KNOWLEDGE)
            ctx.no_match_count = 0
            reply = Reply(answer.text, topic=KNOWLEDGE, citations=answer.citations)
            return TurnOutcome([reply], ctx, confidence=confidence)
        self._visit(ctx, NO_MATCH)
        ctx.no_match_count += 1
        replies = [Reply(self._messages.no_match, topic=NO_MATCH)]
        if ctx.no_match_count >= self._copilot.no_match_threshold:
            ctx.no_match_count = 0
            if self._can_hand_off:
                ctx.pending = "confirm_handoff"
                offer = Reply(OFFER_HANDOFF, topic=t.ESCALATE, suggestions=["Yes", "No"])
                replies.append(offer)
            else:
                replies.append(Reply(self._messages.escalate_link, topic=t.ESCALATE))
        return TurnOutcome(replies, ctx, confidence=confidence)

    def _start_over(self, ctx: DialogContext) -> TurnOutcome:
        # What the site told us about the customer survives a start-over; the dialog does not.
        fresh = DialogContext(
            topics_visited=[t.START_OVER], locale=ctx.locale, variables=ctx.variables
        )
        replies = [
            Reply(self._messages.reset_conversation, topic=t.START_OVER),
            Reply(self._messages.start_over, topic=t.START_OVER),
        ]
        return TurnOutcome(replies, fresh, reset=True)

    @staticmethod
    def _visit(ctx: DialogContext, name: str) -> None:
        ctx.last_topic = name
        if not ctx.topics_visited or ctx.topics_visited[-1] != name:
            ctx.topics_visited = [*ctx.topics_visited, name][-50:]
