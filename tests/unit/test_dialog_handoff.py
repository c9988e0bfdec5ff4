"""The dialog's hand-off decisions, without a hub configured and with one."""

from __future__ import annotations

from copilot.admin.models import Topic
from copilot.conversation.dialog import OFFER_HANDOFF, Dialog, HandoffRequest
from copilot.conversation.models import DialogContext
from copilot.conversation.topics import ESCALATE
from tests.unit.test_dialog import knows_returns, make_copilot

FRAME = Topic(
    name="Broken frame",
    trigger_phrases=["my frame is cracked"],
    response="Let me get a mechanic.",
    handoff=True,
    agent_note="Check the warranty",
)


def test_without_a_hub_every_escalation_gives_the_escalate_link() -> None:
    dialog = Dialog(make_copilot(topics=[FRAME]), knows_returns)
    for text in ("talk to a person", "my frame is cracked"):
        outcome = dialog.respond(text, DialogContext())
        assert outcome.handoff is None
        assert outcome.replies[-1].text == "ESC"
    first = dialog.respond("what is the moon made of", DialogContext())
    second = dialog.respond("and the sun", first.context)
    assert [r.text for r in second.replies] == ["NM", "ESC"]


def test_with_a_hub_escalations_request_a_handoff() -> None:
    dialog = Dialog(make_copilot(topics=[FRAME]), knows_returns, can_hand_off=True)
    asked = dialog.respond("talk to a person", DialogContext())
    assert asked.replies == [] and asked.handoff == HandoffRequest(ESCALATE)
    topic = dialog.respond("my frame is cracked", DialogContext())
    assert [r.text for r in topic.replies] == ["Let me get a mechanic."]
    assert topic.handoff == HandoffRequest("Broken frame", "Check the warranty")


def test_the_offer_after_no_matches_waits_for_an_answer() -> None:
    dialog = Dialog(make_copilot(no_match_threshold=1), knows_returns, can_hand_off=True)
    offered = dialog.respond("what is the moon made of", DialogContext())
    assert [r.text for r in offered.replies] == ["NM", OFFER_HANDOFF]
    assert offered.context.pending == "confirm_handoff" and offered.handoff is None
    assert dialog.respond("yes", offered.context).handoff == HandoffRequest(ESCALATE)
    assert dialog.respond("no", offered.context).handoff is None
    # Something else: a fresh question, answered as usual.
    moved_on = dialog.respond("how do returns work", offered.context)
    assert moved_on.handoff is None and moved_on.replies[0].citations


def test_start_over_keeps_what_the_site_said_about_the_customer() -> None:
    dialog = Dialog(make_copilot(), knows_returns)
    ctx = DialogContext(locale="fr", variables={"name": "Ann"}, last_topic="x")
    confirm = dialog.respond("start over", ctx)
    reset = dialog.respond("yes", confirm.context)
    assert reset.reset
    assert (reset.context.locale, reset.context.variables) == ("fr", {"name": "Ann"})
