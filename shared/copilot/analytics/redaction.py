"""PII redaction for what analytics keeps and exports: customer messages, comments, transcripts.

``Redactor.redact`` replaces, in this order:

1. e-mail addresses with ``[email]``;
2. payment card numbers (13-19 digits, run together or in groups split by one kind of
   separator, a space or a dash) with ``[card]``, only when they pass the Luhn check: a
   16-digit order number that fails it is left as it is;
3. phone numbers of at least 7 digits with ``[phone]``: international ``+CC`` (or ``00CC``)
   numbers, US ``(555) 123-4567`` / ``555-123-4567`` / ``555.123.4567`` / ``1-800-555-0199``,
   UK ``020 7946 0958`` / ``07700 900123``. A number needs a phone's shape, not just its length:
   amounts (``$1,299.00``), years, dates, times, versions, model and order numbers stay;
4. the copilot's own patterns (``extra_patterns``, e.g. its account numbers) with
   ``[redacted]``.

Cards go before phones so that a card number never becomes ``[phone]``. Placeholders carry no
digit and no ``@``, and an extra pattern never sees inside one, so redacting twice gives what
redacting once gave. Every pattern is compiled once, when the ``Redactor`` is made, and a text
with no ``@`` or no digit skips the patterns that need one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import TypeVar, cast

from copilot.errors import BadRequestError

MAX_PATTERNS = 20
MAX_PATTERN_CHARS = 200
PATTERNS_FIELD = "redaction_patterns"

EMAIL = "[email]"
PHONE = "[phone]"
CARD = "[card]"
REDACTED = "[redacted]"

_T = TypeVar("_T")

# Where a number may start and end: not inside a word, a decimal, a date, a version or a path,
# nor right after (or before) another group of digits ("1,299.00", "2024-05-01", "v3.2.1").
_START = r"(?<![\w+])(?<!\w[./-])(?<![0-9][ ,])"
_PHONE_END = r"(?![\w+]|[ .,/-][0-9])"
# A card may be followed by its expiry date ("4111 1111 1111 1111 12/26"); its greedy groups
# already take every group of 3 or more digits that follows, so no shorter card hides in one.
_CARD_END = r"(?![\w+]|[.,/-][0-9])"

_EMAIL_RE = re.compile(
    r"(?<![\w.%+-])[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}(?![\w-])",
)
_CARD_RE = re.compile(
    _START
    + r"(?:[0-9]{13,19}|[0-9]{3,6}(?P<sep>[ -])[0-9]{3,6}(?:(?P=sep)[0-9]{3,6}){1,5})"
    + _CARD_END,
    re.ASCII,
)
_PHONE_RE = re.compile(
    _START
    + r"""(?:
        # international: +CC or 00CC, then digits, single separators and (0)-style groups;
        # each character has one reading, so a failed match costs one step per character.
        # It takes every group that follows, but gives back one that is the start of a time,
        # a date or a decimal ("+44 20 7946 0958 10:30").
        (?:\+|00(?=[1-9]))[0-9]
        (?:[0-9]|[ .-](?=[0-9(])|\([0-9]{1,4}\)(?=[ .-]?[0-9]))*
        (?![\w+]|[.,/:-][0-9])
      | (?:
          # US / NANP: (555) 123-4567, 555-123-4567, 555.123.4567, 1-800-555-0199
          (?:1[ .-]?)?(?:\([0-9]{3}\)[ .-]?|[0-9]{3}[ .-])[0-9]{3}[ .-][0-9]{4}
          # UK national: 020 7946 0958, 0161 496 0000, 07700 900123, (01632) 960123
        | \(?0[0-9]{2,4}\)?[ -]?[0-9]{3,4}[ -]?[0-9]{3,4}
        )"""
    + _PHONE_END
    + ")",
    re.ASCII | re.VERBOSE,
)
_DIGIT_RE = re.compile(r"[0-9]")
_NON_DIGITS_RE = re.compile(r"[^0-9]+")
_PLACEHOLDER_RE = re.compile(r"(\[(?:email|phone|card|redacted)\])")


def luhn_valid(digits: str) -> bool:
    """Whether a string of ASCII digits passes the Luhn (mod 10) check of card numbers."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(m: re.Match[str]) -> str:
    digits = _NON_DIGITS_RE.sub("", m.group())
    return CARD if 13 <= len(digits) <= 19 and luhn_valid(digits) else m.group()


def _phone(m: re.Match[str]) -> str:
    digits = _NON_DIGITS_RE.sub("", m.group())
    # E.164 numbers have at most 15 digits; an international prefix "00" adds two.
    return PHONE if 7 <= len(digits) <= 17 else m.group()


def _shown(pattern: str) -> str:
    return repr(pattern if len(pattern) <= 60 else pattern[:60] + "...")


def validate_patterns(patterns: Sequence[str], *, field: str = PATTERNS_FIELD) -> list[str]:
    """The patterns as a list, once each is known to be a regular expression a ``Redactor``
    can use: at most ``MAX_PATTERNS`` of them, each at most ``MAX_PATTERN_CHARS`` characters,
    compiling, and not matching the empty string (which would redact between every character).

    Raises BadRequestError naming the pattern at fault and why, so an admin can fix it.
    """
    if isinstance(patterns, str):
        raise BadRequestError(
            f"redaction patterns must be a list of regular expressions, not one string: "
            f"[{_shown(patterns)}]",
            field=field,
        )
    if len(patterns) > MAX_PATTERNS:
        raise BadRequestError(
            f"at most {MAX_PATTERNS} redaction patterns, not {len(patterns)}", field=field
        )
    checked = []
    for i, pattern in enumerate(patterns, 1):
        if not isinstance(pattern, str):
            raise BadRequestError(
                f"redaction pattern {i} must be a string, not {type(pattern).__name__}",
                field=field,
            )
        if not pattern:
            raise BadRequestError(f"redaction pattern {i} is empty", field=field)
        if len(pattern) > MAX_PATTERN_CHARS:
            raise BadRequestError(
                f"redaction pattern {i} {_shown(pattern)} is {len(pattern)} characters long: "
                f"at most {MAX_PATTERN_CHARS}",
                field=field,
            )
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise BadRequestError(
                f"redaction pattern {i} {_shown(pattern)} is not a valid regular expression: {exc}",
                field=field,
            ) from None
        if compiled.fullmatch("") is not None:
            raise BadRequestError(
                f"redaction pattern {i} {_shown(pattern)} matches the empty string, "
                "so it would redact everywhere",
                field=field,
            )
        checked.append(pattern)
    return checked


class Redactor:
    """Replaces PII in text with placeholders; see the module's docstring for what and how.

    ``extra_patterns`` are a copilot's own regular expressions (``validate_patterns`` checks
    them: a bad one raises BadRequestError); what they match becomes ``[redacted]``.
    """

    def __init__(
        self,
        extra_patterns: Sequence[str] = (),
        *,
        emails: bool = True,
        phones: bool = True,
        cards: bool = True,
    ) -> None:
        self.extra_patterns = validate_patterns(extra_patterns)
        self.emails = emails
        self.phones = phones
        self.cards = cards
        self._extras = [re.compile(p) for p in self.extra_patterns]

    def __repr__(self) -> str:
        return (
            f"Redactor({self.extra_patterns!r}, emails={self.emails}, phones={self.phones}, "
            f"cards={self.cards})"
        )

    def redact(self, text: str) -> str:
        """The text with its e-mail addresses, card and phone numbers, and whatever the extra
        patterns match replaced by placeholders."""
        if self.emails and "@" in text:
            text = _EMAIL_RE.sub(EMAIL, text)
        if (self.cards or self.phones) and _DIGIT_RE.search(text) is not None:
            if self.cards:
                text = _CARD_RE.sub(_card, text)
            if self.phones:
                text = _PHONE_RE.sub(_phone, text)
        if self._extras:
            # Between the placeholders only: an extra pattern never rewrites one ("[card]"
            # is left alone by a pattern for "card"), which keeps redaction idempotent.
            parts = _PLACEHOLDER_RE.split(text)
            for i in range(0, len(parts), 2):
                for pattern in self._extras:
                    parts[i] = pattern.sub(REDACTED, parts[i])
            text = "".join(parts)
        return text

    def redact_json(self, value: _T) -> _T:
        """A copy of a JSON-like value with every string redacted, in dicts (their values, not
        their keys), lists and tuples at any depth; other values are returned as they are."""
        if isinstance(value, str):
            return cast(_T, self.redact(value))
        if isinstance(value, dict):
            return cast(_T, {k: self.redact_json(v) for k, v in value.items()})
        if isinstance(value, list):
            return cast(_T, [self.redact_json(v) for v in value])
        if isinstance(value, tuple):
            return cast(_T, tuple(self.redact_json(v) for v in value))
        return value


@lru_cache(maxsize=256)
def _compiled(patterns: tuple[str, ...]) -> Redactor:
    return Redactor(patterns)


def redactor_for(patterns: Sequence[str]) -> Redactor:
    """The redactor of a copilot's patterns, built once per process and set of patterns."""
    return _compiled(tuple(patterns))
