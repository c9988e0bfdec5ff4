"""Small text utilities shared by topic matching, chunking and answer composition."""

from __future__ import annotations

import re
import unicodedata

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
        "would'd",
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
        "don't",
        "doesn't",
        "isn't",
        "im",
        "i'm",
        "hey",
        "um",
        "uh",
        "ok",
        "okay",
    ]
)

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    text = text.replace("’", "'")
    # e-bike -> ebike, wi-fi -> wifi: hyphenated words are one token in customers' spelling too
    return re.sub(r"(?<=\w)-(?=\w)", "", text)


def stem(word: str) -> str:
    """A deliberately light suffix stripper: plurals and common verb endings."""
    for suffix, min_len in (("ies", 5), ("ing", 6), ("ed", 5), ("es", 5), ("s", 4)):
        if word.endswith(suffix) and len(word) >= min_len and not word.endswith("ss"):
            base = word[: -len(suffix)]
            return base + "y" if suffix == "ies" else base
    return word


def tokens(text: str) -> list[str]:
    return [stem(w) for w in _WORD.findall(normalize(text))]


def content_tokens(text: str) -> list[str]:
    words = _WORD.findall(normalize(text))
    return [stem(w) for w in words if w not in STOPWORDS]


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
