"""The demo copilot's knowledge (infra/demo/knowledge) asked as a customer asks: follow-ups
that lean on the last answer, and a question whose words belong to two pages, answered
through the chat service with the offline defaults (MiniLM + BM25, in-memory stores)."""

from __future__ import annotations

from pathlib import Path

import pytest

from copilot.admin.models import Copilot
from copilot.bootstrap import Container
from copilot.config import Settings
from copilot.conversation.models import Message
from copilot_dev.fakes import in_memory_container
from tests.unit.test_knowledge import make_copilot

DEMO = Path(__file__).resolve().parents[2] / "infra" / "demo" / "knowledge"


@pytest.fixture(scope="module")
def container() -> Container:
    return in_memory_container(Settings(bucket="kb"))


@pytest.fixture(scope="module")
def demo(container: Container) -> Copilot:
    return make_copilot(container, {p.name: p.read_text() for p in sorted(DEMO.iterdir())})


def chat(container: Container, copilot: Copilot, *questions: str) -> list[Message]:
    """The copilot's reply to each question, in one conversation."""
    started = container.chat.start(copilot.copilot_id)
    replies = []
    for question in questions:
        turn = container.chat.post(started.conversation_id, started.token, question)
        (reply,) = turn.messages[1:]
        replies.append(reply)
    return replies


def body(reply: Message) -> str:
    return reply.text.split("\n\nSources:")[0]


def test_a_follow_up_in_other_words_is_answered_from_the_same_page(
    container: Container, demo: Copilot
) -> None:
    first, follow_up = chat(
        container, demo, "i forgot my password what do i do", "how long is the link good for"
    )
    assert "Forgot password" in body(first)
    assert "60 minutes" in body(follow_up)  # not the no-match message
    assert follow_up.citations[0].source == "account-and-password.md"


def test_a_follow_up_the_last_answer_covered_is_not_told_the_same_again(
    container: Container, demo: Copilot
) -> None:
    first, follow_up = chat(
        container, demo, "How long is the password reset link valid?", "and what if it expired?"
    )
    assert "60 minutes" in body(first)
    assert follow_up.citations and follow_up.citations[0].source == "account-and-password.md"
    assert "60 minutes" not in body(follow_up)


def test_returning_a_charged_battery_is_answered_from_the_returns_page_not_recycling(
    container: Container, demo: Copilot
) -> None:
    (reply,) = chat(container, demo, "can I return an e-bike battery I already charged?")
    assert reply.citations[0].source == "returns-and-refunds.md"
    assert "charged or installed" in body(reply)
    assert "drop off" not in body(reply)


def test_a_new_question_opening_with_and_is_answered_on_its_own(
    container: Container, demo: Copilot
) -> None:
    """The README's example: "and do you ship to Canada?" after a question on returns reads
    like a follow-up but is answered from the shipping page on its own."""
    first, second = chat(container, demo, "Can I return my bike?", "and do you ship to Canada?")
    assert first.citations[0].source == "returns-and-refunds.md"
    assert [c.source for c in second.citations] == ["shipping.md"]
    assert "Canada" in body(second)
