"""Subjects: the places or products a conversation is about, read from the knowledge's own
titles, named by the customer, carried across turns, and the scope retrieval keeps to."""

from __future__ import annotations

import pytest

from copilot.admin.models import Copilot
from copilot.bootstrap import Container
from copilot.config import Settings
from copilot.conversation.dialog import MULTIPLE_TOPICS
from copilot.knowledge.lexical import LexicalIndex
from copilot.knowledge.models import Chunk
from copilot.knowledge.subjects import SubjectIndex, name_words
from copilot_dev.fakes import in_memory_container
from tests.unit.test_knowledge import make_copilot


def chunk(n: int, doc: str, title: str, text: str = "") -> Chunk:
    return Chunk(chunk_id=f"c{n}", copilot_id="c", doc_key=doc, position=0, text=text, title=title)


TITLES = [
    ("kirkwood_wifi.md", "KIRKWOOD HOUSE: Is there free wifi?", "Wifi is free for guests."),
    ("kirkwood_parking.md", "KIRKWOOD HOUSE: Is there parking?", "Parking costs 5 pounds."),
    ("warkworth_wifi.md", "WARKWORTH HOUSE: Is there free wifi?", "Wifi costs 3 pounds a day."),
    ("warkworth_pets.md", "WARKWORTH HOUSE: Are pets allowed?", "No pets, sorry."),
    ("nandos_1.md", "NANDOS: Do you deliver?", "Yes."),
    ("nandos_2.md", "NANDOS: Is there a kids menu?", "Yes."),
    ("nandos_cc_1.md", "NANDOS CITY CENTRE: Do you deliver?", "No."),
    ("nandos_cc_2.md", "NANDOS CITY CENTRE: Are you open late?", "Until 11."),
    ("returns.md", "Returns and refunds", "Return within 30 days. A house rule."),
]


@pytest.fixture(scope="module")
def index() -> SubjectIndex:
    return SubjectIndex.build(
        LexicalIndex.build([chunk(i, d, t, x) for i, (d, t, x) in enumerate(TITLES)])
    )


def test_subjects_are_the_names_titles_share_not_their_questions(index: SubjectIndex) -> None:
    names = sorted(s.name for s in index.subjects.values())
    assert names == ["Kirkwood House", "Nandos", "Nandos City Centre", "Warkworth House"]
    assert index.subjects["kirkwood house"].docs == {"kirkwood_wifi.md", "kirkwood_parking.md"}
    assert index.of_doc("returns.md") == ()  # a page of its own is about no shared subject


def test_a_name_every_page_shares_is_no_subject() -> None:
    site = [chunk(i, f"p{i}.md", f"Page {i} | Acme Bikes") for i in range(4)]
    assert not SubjectIndex.build(LexicalIndex.build(site))


@pytest.mark.parametrize(
    ("message", "named"),
    [
        ("Does the Kirkwood House hotel have wifi?", ["kirkwood house"]),
        ("kirkwood, do they have parking", ["kirkwood house"]),  # a word only it uses
        ("I'd like Nandos City Centre", ["nandos city centre"]),  # the longer name wins
        ("Is Nando's open?", ["nandos"]),
        ("Compare Warkworth House and Kirkwood House", ["warkworth house", "kirkwood house"]),
        ("Is the house quiet?", []),  # "house" is in both names and in a page: no one's
        ("Can I return it?", []),
    ],
)
def test_what_a_message_names(index: SubjectIndex, message: str, named: list[str]) -> None:
    assert [s.key for s in index.mentioned(message)] == named


def test_the_scope_keeps_the_subjects_and_pages_about_nothing(index: SubjectIndex) -> None:
    scope = index.scope(index.named(["warkworth house"]))
    assert scope.docs == {"warkworth_wifi.md", "warkworth_pets.md"}
    assert scope.allows("warkworth_wifi.md") and scope.allows("returns.md")
    assert not scope.allows("kirkwood_wifi.md") and not scope.allows("nandos_1.md")


def test_name_words() -> None:
    assert name_words("Rosa's Bed & Breakfast") == ["rosas", "bed", "and", "breakfast"]


GUEST_HOUSES = {
    "kirkwood_wifi.md": "# KIRKWOOD HOUSE: Is there free wifi?\n\n"
    "Is there free wifi?\nYes, wifi is free in all rooms at Kirkwood House.",
    "kirkwood_parking.md": "# KIRKWOOD HOUSE: Is there parking?\n\n"
    "Is there parking?\nYes, private parking costs 5 pounds a night.",
    "warkworth_wifi.md": "# WARKWORTH HOUSE: Is there free wifi?\n\n"
    "Is there free wifi?\nNo, wifi costs 3 pounds a day at Warkworth House.",
    "warkworth_parking.md": "# WARKWORTH HOUSE: Is there parking?\n\n"
    "Is there parking?\nFree parking is available on site.",
}


@pytest.fixture(scope="module")
def container() -> Container:
    return in_memory_container(Settings(bucket="kb"))


@pytest.fixture(scope="module")
def houses(container: Container) -> Copilot:
    return make_copilot(container, GUEST_HOUSES)


def test_a_follow_up_is_answered_for_the_place_named_earlier(
    container: Container, houses: Copilot
) -> None:
    started = container.chat.start(houses.copilot_id)
    chat = container.chat
    chat.post(started.conversation_id, started.token, "I'm looking for Warkworth House")
    turn = chat.post(started.conversation_id, started.token, "Do they charge for wifi?")
    (reply,) = turn.messages[1:]
    assert "3 pounds" in reply.text
    assert [c.source for c in reply.citations][:1] == ["warkworth_wifi.md"]
    # the other house named: its entry, and the conversation is about it from then on
    turn = chat.post(started.conversation_id, started.token, "And at Kirkwood House?")
    assert [c.source for c in turn.messages[1].citations][:1] == ["kirkwood_wifi.md"]
    turn = chat.post(started.conversation_id, started.token, "Is there parking?")
    assert [c.source for c in turn.messages[1].citations][:1] == ["kirkwood_parking.md"]
    assert all(c.source.startswith("kirkwood") for c in turn.messages[1].citations)


def test_a_question_both_places_answer_alike_asks_which_one(
    container: Container, houses: Copilot
) -> None:
    started = container.chat.start(houses.copilot_id)
    chat = container.chat
    turn = chat.post(started.conversation_id, started.token, "Is there free wifi?")
    (ask,) = turn.messages[1:]
    assert ask.topic == MULTIPLE_TOPICS and not ask.citations
    assert sorted(ask.suggestions[:2]) == ["Kirkwood House", "Warkworth House"]
    pick = ask.suggestions.index("Warkworth House") + 1
    turn = chat.post(started.conversation_id, started.token, str(pick))
    (reply,) = turn.messages[1:]
    assert "3 pounds" in reply.text
    assert [c.source for c in reply.citations] == ["warkworth_wifi.md"]
