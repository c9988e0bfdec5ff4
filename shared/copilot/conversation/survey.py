"""The end-of-conversation survey (CSAT): 1 to 5 and an optional comment, asked once per
conversation when the customer thanks or says goodbye, and after an agent ends a hand-off."""

from __future__ import annotations

import re
from dataclasses import dataclass

SURVEY_TOPIC = "Survey"
ASK = (
    "Before you go: how would you rate this conversation, from 1 (poor) to 5 (excellent)? "
    "You can add a comment after the number."
)
THANKS = "Thank you for your feedback!"
SCORES = ["1", "2", "3", "4", "5"]
MAX_COMMENT_CHARS = 1000

_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
# "4", "4/5", "5 stars", "4 - quick and clear", "five, thanks": a score, then a comment after a
# separator. "2 questions: ..." is no answer (a new message), nor is "12 months?".
_ANSWER = re.compile(
    r"^\s*(?P<score>[1-5]|one|two|three|four|five)\b(?![.,]\d)(?:\s*(?:/\s*5|out of 5|stars?)\b)?"
    r"\s*(?:$|[-:,.!\u2013\u2014]+\s*(?P<comment>.*)$)",
    re.IGNORECASE | re.DOTALL,
)


@dataclass(frozen=True)
class SurveyAnswer:
    score: int
    comment: str | None


def parse_answer(text: str) -> SurveyAnswer | None:
    """The score (and comment) in a reply to the survey; None if it is not one (the customer
    moved on: their message is handled as any other)."""
    match = _ANSWER.match(text)
    if match is None:
        return None
    raw = match.group("score").lower()
    score = int(raw) if raw.isdigit() else _WORDS[raw]
    comment = (match.group("comment") or "").strip()[:MAX_COMMENT_CHARS] or None
    return SurveyAnswer(score, comment)
