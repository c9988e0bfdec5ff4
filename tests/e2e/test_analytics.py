"""Analytics end to end: a known mix of conversations through the whole local stack (the chat
function, the hand-off to the agent desk, the events table's stream through its pump to the
exporter in the ingest function, the archive in the emulated S3 bucket), then the exact figures
in the admin API and the CLI; and the archive's outage: turns still succeed, and the events are
delivered later, or counted as lost."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from copilot.analytics.report import AnalyticsReport
from copilot_dev.cli import app
from copilot_dev.client import CopilotClient
from copilot_dev.emulators.agent_desk import AgentDesk
from copilot_dev.localstack import LocalStack, StackConfig
from tests import analytics_mix
from tests.analytics_mix import report
from tests.conftest import REPO_ROOT, wait_for

pytestmark = pytest.mark.e2e

SECRET = "e2e-analytics-hub-secret-4b1d"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    config = StackConfig.with_free_ports(REPO_ROOT, tmp_path_factory.mktemp("analytics-stack"))
    config.extra_env = {"COPILOT_HUB_SECRET_DESK": SECRET}
    config.analytics_window = 0.2
    config.analytics_max_attempts = 5  # 0.5 + 1 + 2 + 4 + 8 s of retries, then given up on
    with LocalStack(config) as running:
        yield running


@pytest.fixture(scope="module")
def client(stack: LocalStack) -> CopilotClient:
    return stack.copilot_client()


def test_a_known_mix_of_conversations_gives_exact_figures_in_the_api_and_the_cli(
    stack: LocalStack, client: CopilotClient, desk: AgentDesk
) -> None:
    mix = analytics_mix.drive(stack, client, desk)
    copilot_id, until = mix.copilot_id, mix.until
    a, b, c, d = mix.a, mix.b, mix.c, mix.d
    got = analytics_mix.archived(client, mix)
    assert got.events == analytics_mix.EVENTS
    o = got.outcomes
    assert (o.conversations, o.engaged, o.resolved, o.escalated, o.abandoned) == (4, 4, 1, 1, 2)
    assert (o.ended, o.in_progress) == (0, 0)
    r = got.rates
    assert (r.engagement, r.resolution, r.escalation, r.abandon) == (1.0, 0.25, 0.25, 0.5)
    assert got.csat.responses == 2 and got.csat.average == 3.5 and got.csat.satisfied == 0.5
    assert got.csat.distribution == {"1": 0, "2": 1, "3": 0, "4": 0, "5": 1}
    assert (got.feedback.up, got.feedback.down) == (0, 1)
    assert (got.handoffs.handoffs, got.handoffs.answered, got.handoffs.failed) == (1, 1, 0)
    assert got.handoffs.wait_p50_s is not None and got.handoffs.handle_p50_s is not None
    t = got.turns
    assert (t.knowledge, t.no_match, t.to_agent) == (2, 1, 0)
    assert [(g.label, g.count) for g in got.unanswered] == [("Do you rent submarines?", 1)]
    assert [(c.name, c.count) for c in got.most_cited] == [("repairs.md", 2)]
    assert [(c.name, c.count) for c in got.most_downvoted] == [("repairs.md", 1)]
    assert got.events_lost == 0
    [day] = got.daily
    assert (day.conversations, day.resolved, day.escalated, day.abandoned) == (4, 1, 1, 2)
    assert (day.thumbs_up, day.thumbs_down, day.csat) == (0, 1, 3.5)
    assert day.handoff_wait_p50_s == got.handoffs.wait_p50_s

    # Not yet abandoned as things stand now: the same conversations are in progress.
    now = report(client, copilot_id, datetime.now(UTC) + timedelta(seconds=1))
    assert (now.outcomes.abandoned, now.outcomes.in_progress) == (0, 2)

    # The CLI reads the same report: as JSON, and as tables.
    runner = CliRunner()
    args = ["analytics", "--copilot", copilot_id, "--since", "1h", "--until", until.isoformat()]
    args += ["--data-dir", str(stack.config.data_dir)]
    as_json = runner.invoke(app, [*args, "--json"])
    assert as_json.exit_code == 0, as_json.output
    cli = AnalyticsReport.model_validate_json(as_json.output)
    assert cli.model_dump(exclude={"query_ms"}) == got.model_dump(exclude={"query_ms"})
    table = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "1 (25.0% of engaged)" in table.output  # resolved, and escalated
    assert "2 (50.0% of engaged)" in table.output  # abandoned
    assert "3.5 from 2" in table.output and "0 up, 1 down" in table.output
    assert "Do you rent submarines?" in table.output

    # What the customers wrote is stored redacted.
    archive = stack.client("s3")
    bucket = "copilot-analytics"
    keys = [
        o["Key"]
        for o in archive.list_objects_v2(Bucket=bucket, Prefix=f"events/copilot={copilot_id}/")[
            "Contents"
        ]
    ]
    import gzip

    stored = "".join(
        gzip.decompress(archive.get_object(Bucket=bucket, Key=k)["Body"].read()).decode()
        for k in keys
    )
    assert "ann@example.com" not in stored and "555-123-4567" not in stored
    comments = [json.loads(line).get("comment") for line in stored.splitlines()]
    assert "quick, mail me at [email]" in comments and "call [phone]" in comments

    # Transcripts for review: the four conversations, oldest first, redacted.
    body = client.transcripts(copilot_id, since="1h", fmt="jsonl")
    records = [json.loads(line) for line in body.splitlines()]
    ids = [x.conversation_id for x in (a, b, c, d)]
    assert [r["conversation_id"] for r in records] == ids
    said = [m["text"] for r in records for m in r["messages"] if m["role"] == "customer"]
    assert "5 - quick, mail me at [email]" in said and "ann@example.com" not in body
    agent = [m for r in records for m in r["messages"] if m["role"] == "agent"]
    assert [m["text"] for m in agent] == ["Hi, Sam here."]
    out = stack.config.data_dir / "transcripts.csv"
    exported = runner.invoke(
        app,
        [
            *["transcripts", "--copilot", copilot_id, "--since", "1h", "--format", "csv"],
            *["--out", str(out), "--data-dir", str(stack.config.data_dir)],
        ],
    )
    assert exported.exit_code == 0, exported.output
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert len(rows) == sum(len(r["messages"]) for r in records)
    assert {row["conversation_id"] for row in rows} == set(ids)
    assert not any("ann@example.com" in row["text"] for row in rows)


def test_the_terminal_chat_rates_the_last_answer(
    stack: LocalStack, client: CopilotClient, desk: AgentDesk
) -> None:
    copilot_id = analytics_mix.knowledgeable_copilot(stack, client, desk)
    said = "How much does a flat tyre repair cost?\n/down\n/quit\n"
    args = ["chat", "--copilot", copilot_id, "--data-dir", str(stack.config.data_dir)]
    chatted = CliRunner().invoke(app, args, input=said)
    assert chatted.exit_code == 0, chatted.output
    assert "15 euros" in chatted.output and "Thanks for the feedback." in chatted.output
    until = datetime.now(UTC) + timedelta(seconds=1)
    rated = wait_for(
        lambda: (r := report(client, copilot_id, until)).feedback.down and r,
        timeout=30,
        what="the rating in the analytics",
    )
    assert (rated.feedback.up, rated.feedback.down) == (0, 1)
    assert [(d.name, d.count) for d in rated.most_downvoted] == [("repairs.md", 1)]


def test_an_archive_outage_loses_no_turn_and_its_events_arrive_later_or_are_counted_lost(
    stack: LocalStack, client: CopilotClient
) -> None:
    """Runs last in the module: it empties the analytics bucket."""
    s3, bucket = stack.client("s3"), "copilot-analytics"
    copilot_id = client.create_copilot({"name": "Outage"}).copilot_id

    def take_the_bucket_away() -> None:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for o in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=o["Key"])
        s3.delete_bucket(Bucket=bucket)

    # Down for a moment: the turns succeed; the events arrive once the bucket is back.
    take_the_bucket_away()
    later = client.start(copilot_id)
    assert client.send(later.conversation_id, later.token, "hello").messages[-1].role == "copilot"
    time.sleep(1)
    s3.create_bucket(Bucket=bucket)
    until = datetime.now(UTC) + timedelta(seconds=1)
    arrived = wait_for(
        lambda: (r := report(client, copilot_id, until)).outcomes.conversations == 1 and r,
        timeout=30,
        what="the events held back by the outage",
    )
    assert arrived.events == 2 and arrived.events_lost == 0

    # Down for longer than the stream's retries: the batch is given up on, and counted.
    lost_before = stack.analytics_lost
    take_the_bucket_away()
    gone = client.start(copilot_id)
    assert client.send(gone.conversation_id, gone.token, "hello").messages[-1].role == "copilot"
    wait_for(lambda: stack.analytics_lost > lost_before, timeout=40, what="the give-up")
    s3.create_bucket(Bucket=bucket)
    # Each of its two events is either in the archive or counted lost: none is missing, none
    # silent (the first conversation's went with the emptied bucket).
    counted = wait_for(
        lambda: (
            (r := report(client, copilot_id, datetime.now(UTC))).events_lost
            and r.events + r.events_lost == 2
            and r
        ),
        timeout=40,
        what="the second conversation's events, archived or counted lost",
    )
    assert counted.events_lost == stack.analytics_lost - lost_before >= 1
