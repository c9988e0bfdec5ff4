"""PII redaction (copilot.analytics.redaction): e-mails, Luhn-valid cards, phone numbers and a
copilot's own patterns become placeholders; ordinary numbers stay; redacting twice changes
nothing more."""

from __future__ import annotations

from typing import Any

import pytest

from copilot.analytics.redaction import (
    MAX_PATTERN_CHARS,
    MAX_PATTERNS,
    Redactor,
    luhn_valid,
    validate_patterns,
)
from copilot.errors import BadRequestError

REDACTOR = Redactor()


# --- e-mails -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("My email is jane.doe@example.com, thanks.", "My email is [email], thanks."),
        ("Write to j.o+orders@mail.example.co.uk.", "Write to [email]."),
        ("<bob_smith-99@sub.example.org>", "<[email]>"),
        ("mailto:help@example.io please", "mailto:[email] please"),
        ("josé@exämple.fr replied", "[email] replied"),
        ("Two: a@x.com and b@y.net", "Two: [email] and [email]"),
    ],
)
def test_emails_are_redacted(text: str, expected: str) -> None:
    assert REDACTOR.redact(text) == expected


@pytest.mark.parametrize("text", ["user@localhost", "ping @support now", "a@b", "@home"])
def test_what_is_not_an_email_address_stays(text: str) -> None:
    assert REDACTOR.redact(text) == text


# --- cards ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("My card is 4111 1111 1111 1111, expiry 12/26.", "My card is [card], expiry 12/26."),
        ("card 4111-1111-1111-1111 please", "card [card] please"),
        ("charged to 5555555555554444 twice", "charged to [card] twice"),
        ("Amex 3782 822463 10005 was declined", "Amex [card] was declined"),
        ("Visa 4222222222222.", "Visa [card]."),  # 13 digits
        ("4111 1111 1111 1111 12/26 123", "[card] 12/26 123"),
    ],
)
def test_luhn_valid_card_numbers_are_redacted(text: str, expected: str) -> None:
    assert REDACTOR.redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Order 1234567812345678 has not arrived",  # 16 digits, fails Luhn
        "Order 1234 5678 1234 5678 has not arrived",
        "Tracking 4111 1111 1111 1112 shows nothing",
        "ids 1234 5678 9012 3456 7890",  # 20 digits: too long for a card
        "4111 1111-1111 1111",  # mixed separators are no card grouping
    ],
)
def test_numbers_failing_the_card_checks_stay(text: str) -> None:
    assert REDACTOR.redact(text) == text


@pytest.mark.parametrize(
    ("digits", "valid"),
    [
        ("4111111111111111", True),
        ("4111111111111112", False),
        ("378282246310005", True),
        ("79927398713", True),
        ("79927398710", False),
        ("1234567812345678", False),
        ("1234567812345670", True),
    ],
)
def test_luhn(digits: str, valid: bool) -> None:
    assert luhn_valid(digits) is valid


def test_a_card_number_never_becomes_a_phone_number() -> None:
    assert REDACTOR.redact("card: 4111 1111 1111 1111") == "card: [card]"
    # With cards off, a card number is still no phone number.
    assert Redactor(cards=False).redact("card: 4111 1111 1111 1111") == "card: 4111 1111 1111 1111"


# --- phones --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Call me on +44 20 7946 0958 after six.", "Call me on [phone] after six."),
        ("My cell is +1 (555) 123-4567.", "My cell is [phone]."),
        ("Reach me at +1-555-123-4567 or +4915112345678", "Reach me at [phone] or [phone]"),
        ("Tel: +33 1 23 45 67 89", "Tel: [phone]"),
        ("UK office +44 (0)20 7946 0958", "UK office [phone]"),
        ("from abroad 0044 20 7946 0958", "from abroad [phone]"),
        ("phone:+12025550143", "phone:[phone]"),
        ("Call (555) 123-4567 today", "Call [phone] today"),
        ("Call 555-123-4567, or 555.123.4567", "Call [phone], or [phone]"),
        ("My number is 555 123 4567", "My number is [phone]"),
        ("Toll free: 1-800-555-0199.", "Toll free: [phone]."),
        (
            "London 020 7946 0958 or Manchester 0161 496 0000",
            "London [phone] or Manchester [phone]",
        ),
        ("my mobile is 07700 900123", "my mobile is [phone]"),
        ("my mobile is 07700900123", "my mobile is [phone]"),
        ("(01632) 960123", "[phone]"),
        ("Call +44 20 7946 0958 10:30 tomorrow", "Call [phone] 10:30 tomorrow"),
    ],
)
def test_phone_numbers_are_redacted(text: str, expected: str) -> None:
    assert REDACTOR.redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Your order total is $1,299.00 including VAT.",
        "We opened in 2024.",
        "It shipped on 2024-05-01 and arrives 05/09/2024.",
        "The store opens at 10:30 on 2024-05-01T10:30:00Z.",
        "The X200 model runs version 3.2.1 of the firmware.",
        "I need 42 of them, order 12345.",
        "Prices: 1299.00, 12.345.678,90 EUR, 1 299 000 units",
        "Server 192.168.1.1 at port 8080",
        "Pages 100-200 and ISBN 978-3-16-148410-0",
        "+1 for that idea, and +42 more",
        "5551234567",  # no phone's shape: it could be any reference
        "Order total $1,299.00 on 2024-05-01 at 10:30 for model X200 v3.2.1, qty 42, ref 12345.",
    ],
)
def test_ordinary_numbers_stay(text: str) -> None:
    assert REDACTOR.redact(text) == text


# --- everything together, and the switches -------------------------------------------------

MIXED = (
    "I'm jane@example.com, card 4111 1111 1111 1111, phone +44 20 7946 0958, "
    "order 1234567812345678 of $1,299.00 on 2024-05-01."
)


@pytest.mark.parametrize(
    ("redactor", "expected"),
    [
        (
            Redactor(),
            "I'm [email], card [card], phone [phone], order 1234567812345678 of $1,299.00 on "
            "2024-05-01.",
        ),
        (
            Redactor(emails=False),
            "I'm jane@example.com, card [card], phone [phone], order 1234567812345678 of "
            "$1,299.00 on 2024-05-01.",
        ),
        (
            Redactor(cards=False),
            "I'm [email], card 4111 1111 1111 1111, phone [phone], order 1234567812345678 of "
            "$1,299.00 on 2024-05-01.",
        ),
        (
            Redactor(phones=False),
            "I'm [email], card [card], phone +44 20 7946 0958, order 1234567812345678 of "
            "$1,299.00 on 2024-05-01.",
        ),
        (Redactor(emails=False, phones=False, cards=False), MIXED),
    ],
)
def test_each_kind_can_be_switched_off(redactor: Redactor, expected: str) -> None:
    assert redactor.redact(MIXED) == expected


# --- extra patterns ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "text", "expected"),
    [
        ([r"ACC-\d{6}"], "My account ACC-123456 is locked", "My account [redacted] is locked"),
        ([r"ACC-\d{6}"], "ACC-12345 is too short", "ACC-12345 is too short"),
        (
            [r"ACC-\d{6}", r"(?i)member\s*#?\d{8}"],
            "ACC-123456 and Member #12345678, mail a@b.com",
            "[redacted] and [redacted], mail [email]",
        ),
        # An extra pattern never rewrites a placeholder, even one it matches.
        ([r"(?i)card|phone"], "card 4111111111111111 by phone", "[redacted] [card] by [redacted]"),
    ],
)
def test_extra_patterns_are_redacted(patterns: list[str], text: str, expected: str) -> None:
    assert Redactor(patterns).redact(text) == expected


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("ACC-(\\d{6}", "missing ), unterminated subpattern"),
        ("[a-z", "unterminated character set"),
        ("*abc", "nothing to repeat"),
        ("(?P<x>a)(?P<x>b)", "redefinition of group name"),
    ],
)
def test_an_invalid_pattern_is_a_bad_request_naming_it(pattern: str, reason: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        Redactor([r"ACC-\d{6}", pattern])
    assert repr(pattern) in caught.value.message
    assert "redaction pattern 2 " in caught.value.message
    assert reason in caught.value.message
    assert caught.value.field == "redaction_patterns"
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("patterns", "message"),
    [
        (["x" * (MAX_PATTERN_CHARS + 1)], f"at most {MAX_PATTERN_CHARS}"),
        ([f"p{i}" for i in range(MAX_PATTERNS + 1)], f"at most {MAX_PATTERNS} redaction patterns"),
        ([""], "redaction pattern 1 is empty"),
        (["a*"], "redaction pattern 1 'a*' matches the empty string"),
        ([r"\d{6}", 123456], "redaction pattern 2 must be a string, not int"),
        (r"ACC-\d{6}", "not one string"),
    ],
)
def test_validate_patterns_rejects(patterns: Any, message: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        validate_patterns(patterns)
    assert message in caught.value.message


def test_validate_patterns_accepts_the_limits() -> None:
    patterns = ["x" * MAX_PATTERN_CHARS] + [f"p{i}" for i in range(MAX_PATTERNS - 1)]
    assert validate_patterns(tuple(patterns)) == patterns
    assert validate_patterns([]) == []


# --- idempotence ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            MIXED,
            "I'm [email], [redacted] [card], [redacted] [phone], order 1234567812345678 of "
            "$1,299.00 on 2024-05-01.",
        ),
        (
            "Call +44 20 7946 0958 10:30 or (555) 123-4567; card 3782 822463 10005.",
            "Call [phone] 10:30 or [phone]; [redacted] [card].",
        ),
        (
            "[card] [phone] [email] [redacted] ACC-123456",
            "[card] [phone] [email] [redacted] [redacted]",
        ),
        ("card 4111111111111111 555-123-4567", "[redacted] [card] [phone]"),
        (
            "Order total $1,299.00 on 2024-05-01 at 10:30 for model X200 v3.2.1, qty 42.",
            "Order total $1,299.00 on 2024-05-01 at 10:30 for model X200 v3.2.1, qty 42.",
        ),
    ],
)
def test_redaction_is_idempotent(text: str, expected: str) -> None:
    redactor = Redactor([r"ACC-\d{6}", r"(?i)card|phone"])
    once = redactor.redact(text)
    assert once == expected
    assert redactor.redact(once) == once


def test_a_card_next_to_a_phone_is_redacted_in_one_pass() -> None:
    once = REDACTOR.redact("card 4111111111111111 555-123-4567")
    assert once == "card [card] [phone]"
    assert REDACTOR.redact(once) == once


# --- JSON ----------------------------------------------------------------------------------


def test_redact_json_redacts_every_string_but_not_the_keys() -> None:
    transcript: dict[str, Any] = {
        "conversation_id": "c-1",
        "jane@example.com": "a key stays",
        "messages": [
            {"role": "customer", "seq": 1, "text": "I'm jane@example.com"},
            {"role": "customer", "seq": 2, "text": "card 4111 1111 1111 1111", "ok": True},
            {"role": "copilot", "seq": 3, "text": "Order 12345 ships 2024-05-01", "score": 0.5},
        ],
        "nested": [["call +1 555 123 4567", None], ("ACC-123456",)],
    }
    redacted = Redactor([r"ACC-\d{6}"]).redact_json(transcript)
    assert redacted == {
        "conversation_id": "c-1",
        "jane@example.com": "a key stays",
        "messages": [
            {"role": "customer", "seq": 1, "text": "I'm [email]"},
            {"role": "customer", "seq": 2, "text": "card [card]", "ok": True},
            {"role": "copilot", "seq": 3, "text": "Order 12345 ships 2024-05-01", "score": 0.5},
        ],
        "nested": [["call [phone]", None], ("[redacted]",)],
    }
    # The input is left as it was.
    assert transcript["messages"][0]["text"] == "I'm jane@example.com"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("mail a@b.com", "mail [email]"),
        (["a@b.com", 1, 2.5, None, False], ["[email]", 1, 2.5, None, False]),
        ({}, {}),
        (42, 42),
        (None, None),
    ],
)
def test_redact_json_on_scalars_and_lists(value: Any, expected: Any) -> None:
    assert REDACTOR.redact_json(value) == expected
