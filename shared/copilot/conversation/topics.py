"""Topic matching: system topics and the copilot's custom topics, from the customer's words."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from copilot.admin.models import Topic
from copilot.text import analyze

# System topics, as Copilot Studio names them. Phrases are matched like custom trigger phrases
# but must cover nearly the whole message, so "hi, how do I reset my password?" is a question,
# not a greeting.
GREETING = "Greeting"
THANK_YOU = "Thank you"
GOODBYE = "Goodbye"
START_OVER = "Start over"
ESCALATE = "Escalate"

SYSTEM_PHRASES: dict[str, list[str]] = {
    GREETING: [
        "hi",
        "hello",
        "hey",
        "hiya",
        "howdy",
        "good morning",
        "good afternoon",
        "good evening",
        "greetings",
        "hi there",
        "hello there",
    ],
    THANK_YOU: [
        "thanks",
        "thank you",
        "thx",
        "cheers",
        "much appreciated",
        "thanks a lot",
        "great thanks",
        "perfect thanks",
    ],
    GOODBYE: [
        "bye",
        "goodbye",
        "see you",
        "see you later",
        "that's all",
        "that is all",
        "nothing else",
        "i'm done",
        "good bye",
        "bye bye",
    ],
    START_OVER: [
        "start over",
        "restart",
        "start again",
        "reset",
        "begin again",
        "new conversation",
        "reset conversation",
        "start from scratch",
        "restart chat",
    ],
    ESCALATE: [
        "agent",
        "human",
        "person",
        "talk to a person",
        "talk to a human",
        "speak to a human",
        "speak to an agent",
        "speak with someone",
        "talk to someone",
        "real person",
        "live agent",
        "representative",
        "customer service",
        "talk to an agent",
        "human agent",
        "connect me to an agent",
        "operator",
        "talk to support",
        "escalate",
    ],
}

SYSTEM_MIN_SCORE = 0.8
CUSTOM_MIN_SCORE = 0.6
AMBIGUITY_MARGIN = 0.1

YES = frozenset(
    {
        "yes",
        "y",
        "yeah",
        "yep",
        "sure",
        "ok",
        "okay",
        "confirm",
        "please do",
        "yes please",
        "correct",
        "do it",
        "absolutely",
    }
)
NO = frozenset(
    {"no", "n", "nope", "cancel", "no thanks", "don't", "never mind", "nevermind", "not now"}
)
NONE_OF_THESE = "None of these"
# While waiting for an agent, only these stop the wait ("no" may be an answer for the agent).
CANCEL_HANDOFF = {
    "cancel",
    "cancel it",
    "cancel that",
    "cancel the request",
    "cancel request",
    "stop waiting",
    "never mind",
    "nevermind",
    "forget it",
}


@dataclass(frozen=True)
class TopicMatch:
    name: str
    score: float
    system: bool


def phrase_score(message: str, phrase: str) -> float:
    """F1 of the phrase's words against the message's words (content words where there are any)."""
    msg = analyze(message) or analyze(message, keep_stopwords=True)
    phr = analyze(phrase) or analyze(phrase, keep_stopwords=True)
    if not msg or not phr:
        return 0.0
    msg_set, phr_set = set(msg), set(phr)
    common = len(msg_set & phr_set)
    if not common:
        return 0.0
    recall = common / len(phr_set)
    precision = common / len(msg_set)
    return 2 * recall * precision / (recall + precision)


def match_system(message: str) -> TopicMatch | None:
    best: TopicMatch | None = None
    for name, phrases in SYSTEM_PHRASES.items():
        score = max(phrase_score(message, p) for p in phrases)
        if score >= SYSTEM_MIN_SCORE and (best is None or score > best.score):
            best = TopicMatch(name, score, system=True)
    return best


def match_custom(message: str, topics: list[Topic]) -> list[TopicMatch]:
    """Custom topics whose phrases match; several when they match about equally well."""
    scored = []
    for topic in topics:
        score = max(
            max(phrase_score(message, p) for p in topic.trigger_phrases),
            phrase_score(message, topic.name),
        )
        if score >= CUSTOM_MIN_SCORE:
            scored.append(TopicMatch(topic.name, score, system=False))
    if not scored:
        return []
    scored.sort(key=lambda m: -m.score)
    return [m for m in scored if m.score >= scored[0].score - AMBIGUITY_MARGIN]


def is_yes(message: str) -> bool:
    return _as_said(message) in _said(YES)


def is_no(message: str) -> bool:
    return _as_said(message) in _said(NO)


def _as_said(message: str) -> str:
    """A short reply as its words, whatever its punctuation and case ("Yes, please!")."""
    return " ".join(analyze(message, keep_stopwords=True))


@cache
def _said(replies: frozenset[str]) -> frozenset[str]:
    return frozenset(_as_said(r) for r in replies)


def is_cancel(message: str) -> bool:
    return message.strip().lower().rstrip("!.") in CANCEL_HANDOFF


def pick_choice(message: str, choices: list[str]) -> str | None:
    """The option a customer picked from a numbered list: by number, by name, or by words."""
    text = message.strip().rstrip(".!")
    if text.isdigit():
        index = int(text) - 1
        return choices[index] if 0 <= index < len(choices) else None
    lowered = text.lower()
    for choice in choices:
        if lowered == choice.lower():
            return choice
    scored = sorted(((phrase_score(message, c), c) for c in choices), reverse=True)
    if (
        scored
        and scored[0][0] >= CUSTOM_MIN_SCORE
        and (len(scored) == 1 or scored[0][0] > scored[1][0])
    ):
        return scored[0][1]
    return None
