"""Analytics without servers: what a turn records, the survey, and the report's rules over an
archive written by the exporter (DuckDB over its gzipped JSON lines)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from copilot.admin.models import CopilotSpec
from copilot.analytics.events import AnalyticsEvent, EventType, TurnOutcome
from copilot.analytics.export import EventExporter
from copilot.analytics.report import AnalyticsReporter, Period, parse_period
from copilot.analytics.service import AnalyticsService
from copilot.config import Settings
from copilot.conversation import survey
from copilot.errors import BadRequestError
from copilot_dev.fakes import MemoryBlobStore, in_memory_container

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def container(**spec: Any) -> Any:
    c = in_memory_container(Settings(bucket="kb"))
    copilot = c.admin.create(
        CopilotSpec.model_validate(
            {
                "name": "Shop",
                "topics": [
                    {"name": "Hours", "trigger_phrases": ["opening hours"], "response": "9 to 5."}
                ],
                **spec,
            }
        )
    )
    return c, copilot.copilot_id


def recorded(c: Any, conversation_id: str) -> list[AnalyticsEvent]:
    return [e for e in c.conversations.events if e.conversation_id == conversation_id]


def test_a_turn_records_its_outcome_topic_latency_and_the_question_redacted() -> None:
    c, copilot_id = container()
    started = c.chat.start(copilot_id)
    c.chat.post(started.conversation_id, started.token, "opening hours")
    c.chat.post(started.conversation_id, started.token, "Can I write to ann@example.com?")
    events = recorded(c, started.conversation_id)
    assert [(e.type, e.outcome, e.topic) for e in events] == [
        (EventType.CONVERSATION_STARTED, None, None),
        (EventType.TURN, TurnOutcome.TOPIC, "Hours"),
        (EventType.TURN, TurnOutcome.NO_MATCH, "No match"),
    ]
    topic, unanswered = events[1], events[2]
    assert topic.question == "opening hours" and topic.seq == 2
    assert unanswered.question == "Can I write to [email]?" and unanswered.seq == 4
    assert unanswered.confidence is not None  # the gate was consulted
    assert all(e.latency_ms is not None and e.latency_ms >= 0 for e in (topic, unanswered))


def test_thanks_after_an_answer_resolves_and_asks_the_survey_once() -> None:
    c, copilot_id = container()
    s = c.chat.start(copilot_id)
    conv, token = s.conversation_id, s.token
    c.chat.post(conv, token, "opening hours")
    thanked = c.chat.post(conv, token, "thanks")
    assert [m.text for m in thanked.messages[1:]][-1] == survey.ASK
    assert thanked.messages[-1].suggestions == survey.SCORES
    rated = c.chat.post(conv, token, "4 - clear, thanks")
    assert rated.messages[-1].text == survey.THANKS
    again = c.chat.post(conv, token, "thanks")  # no second survey
    assert survey.ASK not in [m.text for m in again.messages]
    events = recorded(c, conv)
    assert [e.reason for e in events if e.type == EventType.RESOLVED] == ["thanked", "csat"]
    [csat] = [e for e in events if e.type == EventType.CSAT]
    assert (csat.score, csat.comment) == (4, "clear, thanks")


def test_thanks_after_no_answer_does_not_resolve_and_a_low_score_does_not_either() -> None:
    c, copilot_id = container()
    s = c.chat.start(copilot_id)
    c.chat.post(s.conversation_id, s.token, "Do you rent submarines on Mars?")
    c.chat.post(s.conversation_id, s.token, "thanks")
    c.chat.post(s.conversation_id, s.token, "2")
    events = recorded(c, s.conversation_id)
    assert [e.type for e in events if e.type == EventType.RESOLVED] == []
    assert [e.score for e in events if e.type == EventType.CSAT] == [2]


def test_a_message_that_is_no_score_after_the_survey_is_handled_as_any_other() -> None:
    c, copilot_id = container()
    s = c.chat.start(copilot_id)
    c.chat.post(s.conversation_id, s.token, "thanks")
    moved_on = c.chat.post(s.conversation_id, s.token, "opening hours")
    assert moved_on.messages[-1].text == "9 to 5."
    assert not [e for e in recorded(c, s.conversation_id) if e.type == EventType.CSAT]


def test_no_survey_when_the_copilot_does_not_ask() -> None:
    c, copilot_id = container(analytics={"csat_survey": False})
    s = c.chat.start(copilot_id)
    assert survey.ASK not in [
        m.text for m in c.chat.post(s.conversation_id, s.token, "bye").messages
    ]
    assert EventType.ENDED in [e.type for e in recorded(c, s.conversation_id)]


@pytest.mark.parametrize(
    ("text", "score", "comment"),
    [
        ("5", 5, None),
        ("4/5", 4, None),
        ("five, great help", 5, "great help"),
        ("3 - slow", 3, "slow"),
        ("2 questions: where is my order?", None, None),
        ("12 months?", None, None),
        ("3.5", None, None),
        ("4 great", None, None),
    ],
)
def test_survey_answers(text: str, score: int | None, comment: str | None) -> None:
    answer = survey.parse_answer(text)
    assert (answer.score, answer.comment) == (score, comment) if answer else score is None


def test_feedback_is_on_the_copilots_answers_only_and_ties_to_its_topic() -> None:
    from copilot.conversation.models import FeedbackRequest

    c, copilot_id = container()
    s = c.chat.start(copilot_id)
    turn = c.chat.post(s.conversation_id, s.token, "opening hours")
    reply = turn.messages[-1]
    c.chat.feedback(s.conversation_id, s.token, reply.seq, FeedbackRequest(rating="up"))
    with pytest.raises(BadRequestError):  # the customer's own message
        c.chat.feedback(
            s.conversation_id, s.token, turn.messages[0].seq, FeedbackRequest(rating="up")
        )
    events = recorded(c, s.conversation_id)
    [given] = [e for e in events if e.type == EventType.FEEDBACK]
    assert (given.seq, given.rating, given.topic) == (reply.seq, 1, "Hours")
    assert [e.reason for e in events if e.type == EventType.RESOLVED] == ["thumbs_up"]


# --- the report's rules ---------------------------------------------------------------------


def event(kind: EventType, conv: str, minutes: float, **fields: Any) -> AnalyticsEvent:
    return AnalyticsEvent(
        type=kind,
        copilot_id="c",
        conversation_id=conv,
        at=NOW + timedelta(minutes=minutes),
        **fields,
    )


def archive(*batches: list[AnalyticsEvent]) -> MemoryBlobStore:
    store = MemoryBlobStore()
    exporter = EventExporter(store)
    seq = 0
    for batch in batches:
        records = []
        for e in batch:
            seq += 1
            body = {"S": e.model_dump_json(exclude_none=True)}
            records.append(
                {
                    "eventName": "INSERT",
                    "dynamodb": {"SequenceNumber": str(seq), "NewImage": {"body": body}},
                }
            )
        exporter.export(records)
    return store


def test_outcomes_follow_copilot_studios_precedence_and_the_period_end(tmp_path: Path) -> None:
    turn = {"outcome": TurnOutcome.KNOWLEDGE, "latency_ms": 10.0}
    both = [
        event(EventType.CONVERSATION_STARTED, "both", 0),
        event(EventType.TURN, "both", 1, **turn),
        event(EventType.RESOLVED, "both", 2),
        event(EventType.ESCALATED, "both", 3, handoff_id="h"),
    ]
    quiet = [
        event(EventType.CONVERSATION_STARTED, "quiet", 0),
        event(EventType.TURN, "quiet", 1, **turn),
    ]
    hello = [
        event(EventType.CONVERSATION_STARTED, "hello", 0),
        event(EventType.TURN, "hello", 1, outcome=TurnOutcome.SYSTEM),
    ]
    store = archive(both, quiet + hello, quiet)  # the second copy of "quiet": a retried batch
    reporter = AnalyticsReporter(store, cache_dir=tmp_path)

    later = reporter.report("c", Period(NOW - timedelta(hours=1), NOW + timedelta(hours=1)))
    o = later.outcomes
    assert (o.conversations, o.engaged, o.escalated, o.resolved, o.abandoned) == (3, 2, 1, 0, 1)
    assert later.events == 8  # each event once (the second copy of "quiet" is not counted)
    assert later.rates.escalation == 0.5 and later.rates.engagement == round(2 / 3, 4)

    soon = reporter.report("c", Period(NOW - timedelta(hours=1), NOW + timedelta(minutes=20)))
    assert (soon.outcomes.abandoned, soon.outcomes.in_progress) == (0, 1)  # idle 19 min only

    before = reporter.report("c", Period(NOW - timedelta(hours=1), NOW + timedelta(minutes=2.5)))
    assert (before.outcomes.escalated, before.outcomes.resolved) == (0, 1)  # as it stood then


def test_the_last_rating_of_an_answer_counts_and_down_votes_name_its_documents(
    tmp_path: Path,
) -> None:
    events = [
        event(EventType.CONVERSATION_STARTED, "a", 0),
        event(EventType.TURN, "a", 1, outcome=TurnOutcome.KNOWLEDGE, citations=["faq.md", "x.md"]),
        event(EventType.FEEDBACK, "a", 2, seq=3, rating=1, citations=["faq.md", "x.md"]),
        event(EventType.FEEDBACK, "a", 3, seq=3, rating=-1, citations=["faq.md", "x.md"]),
        event(EventType.CSAT, "a", 4, score=2),
        event(EventType.CSAT, "a", 5, score=4),
    ]
    r = AnalyticsReporter(archive(events), cache_dir=tmp_path).report(
        "c", Period(NOW - timedelta(hours=1), NOW + timedelta(hours=1))
    )
    assert (r.feedback.up, r.feedback.down) == (0, 1)
    assert [(d.name, d.count) for d in r.most_downvoted] == [("faq.md", 1), ("x.md", 1)]
    assert r.csat.responses == 1 and r.csat.average == 4.0  # the conversation's last answer


@pytest.mark.parametrize(
    ("since", "until", "field"),
    [
        ("yesterday", None, "since"),
        ("7d", "soon", "until"),
        ("2026-12-06", "2026-12-05", "since"),
        ("400d", None, "since"),
    ],
)
def test_a_period_that_is_not_one_is_a_400_naming_the_field(
    since: str, until: str | None, field: str
) -> None:
    with pytest.raises(BadRequestError) as raised:
        parse_period(since, until, now=NOW)
    assert raised.value.field == field


def test_reports_keep_within_the_retention(tmp_path: Path) -> None:
    c, copilot_id = container()
    old = [
        AnalyticsEvent(
            type=EventType.CONVERSATION_STARTED,
            copilot_id=copilot_id,
            conversation_id="old",
            at=datetime.now(UTC) - timedelta(days=40),
        )
    ]
    reporter = AnalyticsReporter(archive_for(copilot_id, old), cache_dir=tmp_path)
    kept = AnalyticsService(c.copilots, c.conversations, reporter, retention_days=30)
    assert kept.report(copilot_id, "90d", None).outcomes.conversations == 0
    longer = AnalyticsService(c.copilots, c.conversations, reporter, retention_days=60)
    assert longer.report(copilot_id, "90d", None).outcomes.conversations == 1


def archive_for(copilot_id: str, events: list[AnalyticsEvent]) -> MemoryBlobStore:
    return archive([e.model_copy(update={"copilot_id": copilot_id}) for e in events])


def test_transcripts_hold_the_periods_conversations_redacted_with_the_copilots_patterns(
    tmp_path: Path,
) -> None:
    import csv
    import json

    c, copilot_id = container(analytics={"redact_patterns": [r"NW-\d{4}"]})
    s = c.chat.start(copilot_id)
    c.chat.post(s.conversation_id, s.token, "my order NW-1234 is late, call +44 20 7946 0958")
    other, other_id = container()  # another copilot's conversation is never exported
    stray = other.chat.start(other_id)
    records = [
        {
            "eventName": "INSERT",
            "dynamodb": {
                "SequenceNumber": str(i),
                "NewImage": {"body": {"S": e.model_dump_json(exclude_none=True)}},
            },
        }
        for i, e in enumerate(
            [
                *c.conversations.events,
                *[
                    e.model_copy(update={"copilot_id": copilot_id})
                    for e in other.conversations.events
                ],
            ],
            1,
        )
    ]
    store = MemoryBlobStore()
    EventExporter(store).export(records)
    service = AnalyticsService(
        c.copilots, c.conversations, AnalyticsReporter(store, cache_dir=tmp_path)
    )

    body, count = service.transcripts(copilot_id, "1h", None, "jsonl")
    [record] = [json.loads(line) for line in body.splitlines()]
    assert count == 1 and record["conversation_id"] == s.conversation_id != stray.conversation_id
    said = [m["text"] for m in record["messages"] if m["role"] == "customer"]
    assert said == ["my order [redacted] is late, call [phone]"]
    table, _ = service.transcripts(copilot_id, "1h", None, "csv")
    rows = list(csv.DictReader(table.splitlines()))
    assert [r["role"] for r in rows] == [m["role"] for m in record["messages"]]
    assert "NW-1234" not in table
    with pytest.raises(BadRequestError):
        service.transcripts(copilot_id, "1h", None, "xml")


def test_a_copilots_redaction_patterns_are_checked_when_saved() -> None:
    from copilot.bootstrap import set_container
    from tests.conftest import chat_test_client

    client = chat_test_client()
    try:
        admin = {"X-Admin-Key": "admin-secret"}
        copilot_id = client.post("/admin/copilots", json={"name": "x"}, headers=admin).json[
            "copilot_id"
        ]
        url = f"/admin/copilots/{copilot_id}"
        bad = client.patch(
            url, json={"analytics": {"redact_patterns": [r"ACC-(\d{6}"]}}, headers=admin
        )
        assert bad.status_code == 400
        assert bad.json["error"]["field"] == "analytics.redact_patterns"
        assert "ACC-(" in bad.json["error"]["message"]
        good = client.patch(
            url, json={"analytics": {"redact_patterns": [r"ACC-\d{6}"]}}, headers=admin
        )
        assert good.status_code == 200
        assert good.json["analytics"] == {
            "csat_survey": True,
            "abandon_after_minutes": 30,
            "redact_patterns": [r"ACC-\d{6}"],
        }
    finally:
        set_container(None)


def test_an_unreadable_stream_record_is_skipped_and_the_rest_archived(tmp_path: Path) -> None:
    good = event(EventType.CONVERSATION_STARTED, "a", 0)
    records = [
        {
            "eventName": "INSERT",
            "dynamodb": {"SequenceNumber": "1", "NewImage": {"body": {"S": "{not json"}}},
        },
        {"eventName": "REMOVE", "dynamodb": {"SequenceNumber": "2"}},  # a TTL deletion
        {
            "eventName": "INSERT",
            "dynamodb": {
                "SequenceNumber": "3",
                "NewImage": {"body": {"S": good.model_dump_json(exclude_none=True)}},
            },
        },
    ]
    store = MemoryBlobStore()
    result = EventExporter(store).export(records)
    assert (result.events, result.objects) == (1, 1)
    report = AnalyticsReporter(store, cache_dir=tmp_path).report(
        "c", Period(NOW - timedelta(hours=1), NOW + timedelta(hours=1))
    )
    assert report.outcomes.conversations == 1 and report.events == 1
