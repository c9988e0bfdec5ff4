from __future__ import annotations

from collections.abc import Sequence

from copilot.admin.models import Copilot, Topic
from copilot.conversation.dialog import KNOWLEDGE, MULTIPLE_TOPICS, NO_MATCH, Dialog
from copilot.conversation.models import DialogContext
from copilot.conversation.topics import ESCALATE, GREETING, START_OVER
from copilot.knowledge.answer import Consulted
from copilot.knowledge.models import Answer, Citation
from copilot.schema import utcnow


def make_copilot(**kw: object) -> Copilot:
    now = utcnow()
    base: dict[str, object] = {
        "copilot_id": "c1",
        "name": "Helper",
        "created_at": now,
        "updated_at": now,
        "topics": [
            Topic(name="Book a repair", trigger_phrases=["book a repair"], response="Book online."),
            Topic(
                name="Repair status", trigger_phrases=["repair status"], response="Check status."
            ),
        ],
        "messages": {
            "greeting": "G",
            "no_match": "NM",
            "escalate_link": "ESC",
            "multiple_topics_matched": "WHICH",
            "start_over": "SO",
            "reset_conversation": "RESET",
        },
        "no_match_threshold": 2,
    }
    base.update(kw)
    return Copilot.model_validate(base)


ANSWER = Answer(
    text="Returns are free. [1]",
    citations=[
        Citation(index=1, title="Returns", source="returns.md", snippet="Returns are free.")
    ],
)


def knows_returns(question: str, subjects: Sequence[str] = (), ask_which: bool = True) -> Consulted:
    return Consulted(ANSWER if "return" in question.lower() else None, list(subjects))


def run(dialog: Dialog, ctx: DialogContext, text: str) -> tuple[list[str], DialogContext]:
    outcome = dialog.respond(text, ctx)
    return [r.text for r in outcome.replies], outcome.context


def test_greeting_uses_the_configured_message() -> None:
    texts, ctx = run(Dialog(make_copilot(), knows_returns), DialogContext(), "hello")
    assert texts == ["G"]
    assert ctx.last_topic == GREETING


def test_knowledge_answer_carries_citations() -> None:
    outcome = Dialog(make_copilot(), knows_returns).respond("how do returns work", DialogContext())
    assert outcome.replies[0].topic == KNOWLEDGE
    assert outcome.replies[0].citations[0].source == "returns.md"


def test_no_match_then_escalation_offer_at_threshold() -> None:
    dialog = Dialog(make_copilot(), knows_returns)
    texts, ctx = run(dialog, DialogContext(), "quantum chromodynamics")
    assert texts == ["NM"] and ctx.no_match_count == 1
    texts, ctx = run(dialog, ctx, "string theory")
    assert texts == ["NM", "ESC"]
    assert ctx.no_match_count == 0  # the count restarts after the offer


def test_a_match_resets_the_no_match_count() -> None:
    dialog = Dialog(make_copilot(), knows_returns)
    _, ctx = run(dialog, DialogContext(), "quantum chromodynamics")
    _, ctx = run(dialog, ctx, "how do returns work")
    texts, ctx = run(dialog, ctx, "string theory")
    assert texts == ["NM"]


def test_multiple_topics_ask_which_and_the_choice_runs_it() -> None:
    dialog = Dialog(make_copilot(), knows_returns)
    outcome = dialog.respond("repair", DialogContext())
    assert outcome.replies[0].topic == MULTIPLE_TOPICS
    assert outcome.replies[0].text.startswith("WHICH")
    assert outcome.replies[0].suggestions == ["Book a repair", "Repair status", "None of these"]
    texts, ctx = run(dialog, outcome.context, "2")
    assert texts == ["Check status."]
    assert ctx.pending is None and ctx.last_topic == "Repair status"


def test_none_of_these_falls_back_to_knowledge_of_the_original_question() -> None:
    copilot = make_copilot(
        topics=[
            Topic(name="Return a bike", trigger_phrases=["return bike"], response="A"),
            Topic(name="Return parts", trigger_phrases=["return parts"], response="B"),
        ]
    )
    dialog = Dialog(copilot, knows_returns)
    outcome = dialog.respond("return", DialogContext())
    assert outcome.replies[0].topic == MULTIPLE_TOPICS
    texts, _ = run(dialog, outcome.context, "none of these")
    assert texts == [ANSWER.text]


def test_start_over_confirms_then_resets_context() -> None:
    dialog = Dialog(make_copilot(), knows_returns)
    _, ctx = run(dialog, DialogContext(), "quantum chromodynamics")
    outcome = dialog.respond("start over", ctx)
    assert outcome.replies[0].suggestions == ["Yes", "No"]
    confirmed = dialog.respond("yes", outcome.context)
    assert [r.text for r in confirmed.replies] == ["RESET", "SO"]
    assert confirmed.reset
    assert confirmed.context.no_match_count == 0
    assert confirmed.context.topics_visited == [START_OVER]


def test_start_over_declined_keeps_context() -> None:
    dialog = Dialog(make_copilot(), knows_returns)
    _, ctx = run(dialog, DialogContext(), "quantum chromodynamics")
    outcome = dialog.respond("start over", ctx)
    declined = dialog.respond("no", outcome.context)
    assert not declined.reset
    assert declined.replies[0].text.startswith("OK, let's carry on")
    assert declined.context.topics_visited == [NO_MATCH, START_OVER]


def test_escalate_gives_the_escalate_link_without_a_hub() -> None:
    texts, ctx = run(Dialog(make_copilot(), knows_returns), DialogContext(), "talk to a person")
    assert texts == ["ESC"] and ctx.last_topic == ESCALATE


class PlacesDesk:
    """Knowledge about two guest houses with alike entries: a question naming neither fits
    both (ask which), one naming a place or following one is answered for it."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, tuple[str, ...], bool]] = []

    def __call__(self, question: str, subjects: Sequence[str], ask_which: bool) -> Consulted:
        self.asked.append((question, tuple(subjects), ask_which))
        lowered = question.lower()
        named = [k for k in ("kirkwood house", "warkworth house") if k in lowered]
        about = named or list(subjects)
        if not about:
            if ask_which:
                return Consulted(None, [], ["Kirkwood House", "Warkworth House"])
            return Consulted(Answer(text="Wifi is free at most places. [1]", citations=[]), [])
        text = f"Wifi is free at {about[0].title()}. [1]"
        return Consulted(Answer(text=text, citations=[]), about[:1])


def test_the_place_a_customer_names_is_carried_to_later_questions() -> None:
    desk = PlacesDesk()
    dialog = Dialog(make_copilot(), desk)
    texts, ctx = run(dialog, DialogContext(), "Tell me about Warkworth House")
    assert ctx.subjects == ["warkworth house"]
    texts, ctx = run(dialog, ctx, "Do they charge for wifi?")
    assert texts == ["Wifi is free at Warkworth House. [1]"]
    assert desk.asked[-1] == ("Do they charge for wifi?", ("warkworth house",), True)
    texts, ctx = run(dialog, ctx, "Start over")
    texts, ctx = run(dialog, ctx, "Yes")
    assert ctx.subjects == []  # a start-over forgets the place too


def test_a_question_several_places_answer_alike_asks_which_and_answers_the_pick() -> None:
    desk = PlacesDesk()
    dialog = Dialog(make_copilot(), desk)
    outcome = dialog.respond("Is the wifi free?", DialogContext())
    (reply,) = outcome.replies
    assert reply.topic == MULTIPLE_TOPICS
    assert reply.suggestions == ["Kirkwood House", "Warkworth House", "None of these"]
    assert "1. Kirkwood House" in reply.text
    texts, ctx = run(dialog, outcome.context, "2")
    assert texts == ["Wifi is free at Warkworth House. [1]"]
    assert ctx.subjects == ["warkworth house"] and ctx.pending is None
    # "None of these": the question is answered without asking again
    outcome = dialog.respond("Is the wifi free?", DialogContext())
    texts, ctx = run(dialog, outcome.context, "None of these")
    assert texts == ["Wifi is free at most places. [1]"]
    assert desk.asked[-1] == ("Is the wifi free?", (), False)
