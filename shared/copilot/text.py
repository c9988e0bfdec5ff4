"""The one text analyzer (BM25 terms, topic phrases, hand-off summaries) and sentence splitting.

``analyze`` is what every word comparison in the package goes through: lower-cased,
accent-folded words, a hyphen or apostrophe inside a word joining it ("e-bike" -> "ebike",
"don't" -> "dont", as customers spell them either way), stopwords dropped unless asked for,
Snowball-stemmed. The BM25 segments store these terms: a change here changes what an old
segment's postings mean, so it needs a segment format bump and a calibration run.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from typing import Any

STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "then",
        "so",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "from",
        "into",
        "about",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "am",
        "do",
        "does",
        "did",
        "doing",
        "have",
        "has",
        "had",
        "i",
        "me",
        "my",
        "mine",
        "we",
        "our",
        "ours",
        "you",
        "your",
        "yours",
        "he",
        "she",
        "it",
        "its",
        "they",
        "them",
        "their",
        "this",
        "that",
        "these",
        "those",
        "there",
        "here",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "how",
        "when",
        "where",
        "why",
        "can",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "not",
        "no",
        "yes",
        "please",
        "just",
        "also",
        "very",
        "really",
        "want",
        "wanted",
        "need",
        "needed",
        "like",
        "let",
        "lets",
        "get",
        "got",
        "some",
        "any",
        "all",
        "more",
        "most",
        "much",
        "many",
        "other",
        "such",
        "only",
        "own",
        "same",
        "too",
        "than",
        "s",
        "t",
        "im",
        "hey",
        "um",
        "uh",
        "ok",
        "okay",
    ]
)

_WORD = re.compile(r"[a-z0-9]+")
_JOINED = re.compile(r"(?<=\w)['’-](?=\w)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
MAX_WORD = 40  # longer "words" are ids, hashes or base64, not words anyone asks about


@cache
def _stemmer() -> Any:
    import Stemmer  # PyStemmer: Snowball stemmers in C, ~1 ms to import

    return Stemmer.Stemmer("english")


def words(text: str) -> list[str]:
    """Lower-cased, accent-folded words, a hyphen or apostrophe inside a word joining it."""
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return [w for w in _WORD.findall(_JOINED.sub("", text)) if len(w) < MAX_WORD]


def analyze(text: str, *, keep_stopwords: bool = False) -> list[str]:
    """Snowball-stemmed ``words``, without stopwords unless ``keep_stopwords`` (a phrase made
    only of stopwords, "that is all", still has to be matched)."""
    found = words(text)
    if not keep_stopwords:
        found = [w for w in found if w not in STOPWORDS]
    return list(_stemmer().stemWords(found))


_ITEM = r"(?:[-*+]|\d+[.)])\s"  # a list item's "- " or "1. "
LIST_MARKER = re.compile(rf"^{_ITEM}\s*")


def sentences(text: str) -> list[str]:
    """Sentences, and list items as sentences that keep their marker ("1. Remove it")."""
    out: list[str] = []
    for block in re.split(rf"\n\s*\n|\n(?=\s*{_ITEM})", text):
        block = " ".join(block.split())
        marker = LIST_MARKER.match(block)
        prefix = marker.group(0) if marker else ""
        parts = [s.strip() for s in _SENTENCE_END.split(block[len(prefix) :]) if s.strip()]
        if parts and prefix:
            parts[0] = prefix + parts[0]
        out.extend(parts)
    return out


def split_paragraphs(text: str) -> list[str]:
    """The text's paragraphs (separated by a blank line), stripped, empty ones dropped."""
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
