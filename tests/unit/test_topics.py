from __future__ import annotations

import pytest

from copilot.admin.models import Topic
from copilot.conversation import topics as t


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("hi", t.GREETING),
        ("Hello there!", t.GREETING),
        ("thank you!", t.THANK_YOU),
        ("bye", t.GOODBYE),
        ("start over", t.START_OVER),
        ("I want to talk to a person", t.ESCALATE),
        ("can I speak to an agent please", t.ESCALATE),
    ],
)
def test_system_topics_match_the_customers_words(message: str, expected: str) -> None:
    match = t.match_system(message)
    assert match is not None and match.name == expected


@pytest.mark.parametrize(
    "message",
    [
        "Hi, how do I reset my password?",  # a question that starts with a greeting
        "thanks, and what about returns?",
        "reset my password",
        "How long does shipping take?",
    ],
)
def test_questions_are_not_mistaken_for_system_topics(message: str) -> None:
    assert t.match_system(message) is None


TOPICS = [
    Topic(
        name="Book a repair", trigger_phrases=["book a repair", "repair appointment"], response="r1"
    ),
    Topic(
        name="Repair status", trigger_phrases=["repair status", "is my repair done"], response="r2"
    ),
    Topic(name="Gift cards", trigger_phrases=["gift card", "buy a gift card"], response="r3"),
]


def test_one_custom_topic_matches_by_phrase_words() -> None:
    matches = t.match_custom("I'd like to book a repair for my bike", TOPICS)
    assert [m.name for m in matches] == ["Book a repair"]


def test_equally_good_matches_are_all_returned() -> None:
    assert {m.name for m in t.match_custom("repair", TOPICS)} == {"Book a repair", "Repair status"}


def test_no_custom_topic_for_unrelated_words() -> None:
    assert t.match_custom("what is your return policy", TOPICS) == []


def test_pick_choice_by_number_name_or_words() -> None:
    choices = ["Book a repair", "Repair status", "None of these"]
    assert t.pick_choice("2", choices) == "Repair status"
    assert t.pick_choice("book a repair", choices) == "Book a repair"
    assert t.pick_choice("none of these", choices) == "None of these"
    assert t.pick_choice("7", choices) is None
    assert t.pick_choice("something else entirely", choices) is None


def test_yes_and_no() -> None:
    assert t.is_yes("Yes!") and t.is_yes("yep") and not t.is_yes("no")
    assert t.is_no("No thanks") and t.is_no("cancel") and not t.is_no("yes")


def test_yes_and_no_whatever_the_punctuation_case_or_apostrophe() -> None:
    assert t.is_yes("Yes, please!") and t.is_yes("Confirmed.") and t.is_yes("OK")
    assert t.is_no("Don’t") and t.is_no("don't") and t.is_no("Never mind.")
    assert not t.is_yes("yes, but what about returns?")


def test_a_negation_is_a_word_not_a_stopword() -> None:
    assert t.match_system("I don't need an agent") is None
    assert t.match_system("I need an agent") is not None
