"""Analytics benchmark: what recording costs a warm turn, and a report over a million events.

    .venv/bin/python bench/analytics.py [--turns 300] [--events 1000000] [--json out.json]

1. Recording overhead: warm customer turns of one copilot (a custom topic's answer: no model
   in the way) through the conversation service on the real DynamoDB API (moto server over
   HTTP, as the local stack runs it), with the analytics events table and without it,
   interleaved in rounds so both sides see the same machine; plus the CPU of building a turn's
   events alone (what recording adds besides the transaction's extra item).
2. Report query time: ``--events`` generated events (one copilot, 30 days, deterministic mix
   of conversations) archived as the exporter writes them (gzipped JSON lines, one object per
   day and batch), then ``AnalyticsReporter.report`` over the 30 days: first report (archive
   read into the cache and queried) and a second one (cached files), without the embedder
   and then with it (the 5,000 most recent no-match questions grouped with MiniLM).

Results and method: docs/analytics.md ("Cost and speed").
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "shared"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _stats import pct  # noqa: E402

SEED = 19


def recording_overhead(turns: int) -> dict[str, Any]:
    import boto3

    from copilot.adapters.aws.dynamo import DynamoConversationStore, create_tables
    from copilot.admin.models import CopilotSpec
    from copilot.analytics.events import AnalyticsEvent
    from copilot.config import Settings
    from copilot.conversation import recording
    from copilot.conversation.models import Conversation, Message
    from copilot_dev.fakes import in_memory_container
    from copilot_dev.localstack import free_port
    from tests.conftest import _serve  # the moto server the tests use

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(tempfile.mkdtemp()) / "moto.log"
    cmd = [sys.executable, "-m", "copilot_dev.localaws", "--port", str(port)]
    with _serve(cmd, url + "/moto-api/", log):
        client = boto3.client(
            "dynamodb",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        create_tables(
            client, copilots="c", conversations="conv", documents="d", analytics_events="evt"
        )
        stores = {
            "with analytics": DynamoConversationStore(client, "conv", events_table="evt"),
            "without": DynamoConversationStore(client, "conv", events_table=None),
        }
        spec = CopilotSpec(
            name="Bench",
            topics=[
                {
                    "name": "Hours",
                    "trigger_phrases": ["opening hours", "when are you open"],
                    "response": "We are open 9 to 6, Monday to Saturday.",
                }
            ],
            analytics={"csat_survey": False},
        )
        services = {}
        for name, store in stores.items():
            container = in_memory_container(Settings(bucket="bench"), conversations=store)
            copilot = container.admin.create(spec)
            services[name] = (container.chat, copilot.copilot_id)
        times: dict[str, list[float]] = {name: [] for name in services}
        started = {name: chat.start(cid) for name, (chat, cid) in services.items()}
        for _ in range(20):  # warm both (connections, caches)
            for name, (chat, _cid) in services.items():
                s = started[name]
                chat.post(s.conversation_id, s.token, "what are your opening hours?")
        for i in range(turns):
            order = list(services) if i % 2 == 0 else list(reversed(services))
            for name in order:
                chat, _cid = services[name]
                s = started[name]
                if i % 40 == 0:  # fresh conversations now and then (they grow)
                    s = started[name] = chat.start(_cid)
                t0 = time.perf_counter()
                chat.post(s.conversation_id, s.token, "what are your opening hours?")
                times[name].append((time.perf_counter() - t0) * 1000)
        # The CPU of building a turn's events alone.
        chat, cid = services["with analytics"]
        copilot = chat._copilots.get(cid)
        assert copilot is not None
        conv = Conversation(conversation_id="x", copilot_id=cid, token_hash="h")
        customer = Message(seq=2, role="customer", text="what are your opening hours? a@b.com")
        reply = Message(seq=3, role="copilot", text="We are open.", topic="Hours")
        n = 20000
        t0 = time.perf_counter()
        for _ in range(n):
            events = recording.turn_events(
                copilot, conv, customer, [reply], confidence=None, latency_ms=1.0
            )
            for e in events:
                e.model_dump_json(exclude_none=True)
        build_us = (time.perf_counter() - t0) / n * 1e6
        assert isinstance(events[0], AnalyticsEvent)
    out: dict[str, Any] = {"turns": turns, "build_events_us": round(build_us, 1)}
    for name, values in times.items():
        out[name] = {"p50_ms": round(pct(values, 50), 2), "p95_ms": round(pct(values, 95), 2)}
    out["overhead_p50_ms"] = round(out["with analytics"]["p50_ms"] - out["without"]["p50_ms"], 2)
    return out


def generate_events(count: int, copilot_id: str, days: int, end: datetime) -> list[str]:
    """A deterministic mix: each conversation starts, has 1-4 turns (knowledge, no match,
    topic), and ends resolved, escalated (a hand-off with wait and handling), rated, or not."""
    from copilot.analytics.events import AnalyticsEvent, EventType, TurnOutcome

    rng = random.Random(SEED)
    docs = [f"doc-{i:03d}.md" for i in range(200)]
    questions = [f"question about topic {i} that nobody answered" for i in range(3000)]
    lines: list[str] = []
    conv = 0
    while len(lines) < count:
        conv += 1
        cid = f"conv-{conv:08d}"
        at = end - timedelta(seconds=rng.uniform(3600, days * 86400 - 3600))

        def add(kind: EventType, cid: str = cid, **fields: Any) -> None:
            nonlocal at
            at += timedelta(seconds=rng.uniform(2, 40))
            event = AnalyticsEvent(
                type=kind, copilot_id=copilot_id, conversation_id=cid, at=at, **fields
            )
            lines.append(event.model_dump_json(exclude_none=True))

        add(EventType.CONVERSATION_STARTED)
        for seq in range(rng.randint(1, 4)):
            roll = rng.random()
            if roll < 0.6:
                add(
                    EventType.TURN,
                    seq=2 * seq + 2,
                    outcome=TurnOutcome.KNOWLEDGE,
                    confidence=round(rng.uniform(0.5, 0.95), 3),
                    citations=rng.sample(docs, 2),
                    latency_ms=round(rng.uniform(15, 60), 1),
                    question="how do I do the thing",
                )
            elif roll < 0.8:
                add(
                    EventType.TURN,
                    seq=2 * seq + 2,
                    outcome=TurnOutcome.NO_MATCH,
                    confidence=0.1,
                    latency_ms=round(rng.uniform(15, 60), 1),
                    question=rng.choice(questions),
                )
            else:
                add(EventType.TURN, seq=2 * seq + 2, outcome=TurnOutcome.TOPIC, latency_ms=5.0)
        ending = rng.random()
        if ending < 0.15:
            hid = f"h-{conv}"
            add(EventType.TURN, outcome=TurnOutcome.ESCALATION, latency_ms=8.0)
            add(EventType.ESCALATED, handoff_id=hid, hub="generic")
            add(EventType.AGENT_JOINED, handoff_id=hid)
            add(EventType.HANDOFF_ENDED, handoff_id=hid)
            add(EventType.CSAT, score=rng.randint(1, 5))
        elif ending < 0.5:
            add(EventType.RESOLVED, reason="thanked")
            if rng.random() < 0.3:
                add(
                    EventType.FEEDBACK,
                    seq=3,
                    rating=1 if rng.random() < 0.7 else -1,
                    citations=rng.sample(docs, 2),
                )
    return lines[:count]


def report_time(count: int) -> dict[str, Any]:
    from copilot.analytics.export import jsonl_gz, partition
    from copilot.analytics.report import AnalyticsReporter, Period
    from copilot_dev.fakes import MemoryBlobStore

    end = datetime(2026, 12, 5, tzinfo=UTC)
    t0 = time.perf_counter()
    lines = generate_events(count, "bench", 30, end)
    generated_s = time.perf_counter() - t0
    by_day: dict[str, list[str]] = {}
    for line in lines:
        day = json.loads(line)["at"][:10]
        by_day.setdefault(day, []).append(line)
    archive = MemoryBlobStore()
    objects = 0
    archived_bytes = 0
    for day, members in sorted(by_day.items()):
        for start in range(0, len(members), 5000):  # a stream batch's worth each
            body = jsonl_gz(members[start : start + 5000])
            archive.put(f"{partition('bench', day)}{start:024d}.jsonl.gz", body)
            objects += 1
            archived_bytes += len(body)
    cache = Path(tempfile.mkdtemp())
    reporter = AnalyticsReporter(archive, cache_dir=cache)
    period = Period(end - timedelta(days=30), end)
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        report = reporter.report("bench", period)
        runs.append(round(time.perf_counter() - t0, 2))
    # With the unanswered questions grouped by meaning (the default MiniLM, loaded first).
    from copilot.adapters.providers.offline import MiniLMEmbeddings

    embedder = MiniLMEmbeddings()
    embedder.warm()
    grouping = AnalyticsReporter(archive, embedder=lambda: embedder, cache_dir=cache)
    t0 = time.perf_counter()
    grouped = grouping.report("bench", period)
    grouped_s = round(time.perf_counter() - t0, 2)
    return {
        "events": count,
        "conversations": report.outcomes.conversations,
        "objects": objects,
        "archived_mb": round(archived_bytes / 1e6, 1),
        "generate_s": round(generated_s, 1),
        "report_s": runs,  # first: archive read into the cache, then cached
        "report_with_groups_s": grouped_s,
        "groups": [(g.label, g.count) for g in grouped.unanswered[:3]],
        "events_read": report.events,
        "rates": report.rates.model_dump(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = {
        "recording": recording_overhead(args.turns),
        "report": report_time(args.events),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    r = results["recording"]
    print(
        f"\nwarm turn p50: {r['with analytics']['p50_ms']} ms with analytics, "
        f"{r['without']['p50_ms']} ms without: overhead {r['overhead_p50_ms']} ms "
        f"(target < 2 ms); building the events {r['build_events_us']} us"
    )
    q = results["report"]
    print(
        f"report over {q['events']:,} events: {q['report_s']} s; with the unanswered questions"
        f" grouped: {q['report_with_groups_s']} s"
    )


if __name__ == "__main__":
    main()
