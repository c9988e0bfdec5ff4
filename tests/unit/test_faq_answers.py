"""An FAQ entry's answer is embedded on its own (``part_texts``): a question worded unlike
the entry's own question matches the answer that settles it."""

from __future__ import annotations

from copilot.config import Settings
from copilot.knowledge.models import Chunk, part_texts
from copilot_dev.fakes import in_memory_container
from tests.unit.test_knowledge import make_copilot


def chunk(text: str) -> Chunk:
    return Chunk(chunk_id="c", copilot_id="k", doc_key="faq.md", position=0, text=text, title="Faq")


def test_the_line_after_a_question_is_its_answer() -> None:
    text = (
        "Do you serve alcohol?\nYes, Wagamama serves alcohol.\n\n"
        "Is there parking?\n\nThere is no parking at the restaurant.\n\n"
        "Opening hours are 11:00 to 22:00.\nWe close on public holidays."
    )
    assert part_texts(chunk(text)) == [
        "Yes, Wagamama serves alcohol.",
        "There is no parking at the restaurant.",
    ]


def test_a_question_answered_by_a_list_gives_its_items_not_the_intro() -> None:
    text = "Which cards do you take?\nWe take:\n- Visa\n- Mastercard"
    assert part_texts(chunk(text)) == ["Faq: We take:\n\nVisa", "Faq: We take:\n\nMastercard"]


def test_a_question_in_other_words_is_answered_from_the_faq_entry_not_a_review() -> None:
    container = in_memory_container(Settings(bucket="kb"))
    copilot = make_copilot(
        container,
        {
            "wagamama-faq-1.md": "# WAGAMAMA: Do you serve alcohol?\n\n"
            "Do you serve alcohol?\nYes, Wagamama serves alcohol.\n",
            "wagamama-faq-2.md": "# WAGAMAMA: Is there parking?\n\n"
            "Is there parking?\nThere is no parking at Wagamama.\n",
            "wagamama-review-1.md": "# WAGAMAMA: review 1\n\n"
            "My partner and I recently went out to Wagamama, a Japanese restaurant nearby. I "
            "got a beer for a drink, which proved to be quite affordable. For our dishes we "
            "ordered Soba and Gyoza, which were very high quality. The restaurant was in a "
            "lovely part of town, but the indoor decor was dated.\n",
        },
    )
    # (A review that mentions a beer matched it better before the answer had its own vector.)
    answer = container.answerer.answer(
        copilot, "Does Wagamama offer a large variety of beers on their drink menu?"
    )
    assert answer is not None
    assert answer.citations[0].source == "wagamama-faq-1.md"
