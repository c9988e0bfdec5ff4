"""Reports over the event archive: SQL (DuckDB) over a copilot's gzipped JSON lines.

The definitions of every figure are in docs/analytics.md; the SQL below is their one source.
It keeps to what DuckDB and Athena (Trino) both run, so the same queries serve an Athena table
over the same keys.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from copilot.analytics.export import LOST_PREFIX, partition
from copilot.errors import BadRequestError
from copilot.ports import BlobStore

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings

log = logging.getLogger(__name__)

MAX_OBJECT_BYTES = 512 * 1024 * 1024
MAX_DAYS = 366
NO_MATCH_OUTCOMES = ("no_match", "escalation_offer")
UNANSWERED_SAMPLE = 5000  # the most recent no-match questions grouped by meaning

# The archive's columns and their SQL types ("at": ISO text in the files, a UTC timestamp here).
COLUMNS = {
    "event_id": "VARCHAR",
    "type": "VARCHAR",
    "conversation_id": "VARCHAR",
    "at": "TIMESTAMP",
    "seq": "BIGINT",
    "outcome": "VARCHAR",
    "topic": "VARCHAR",
    "confidence": "DOUBLE",
    "citations": "VARCHAR[]",
    "latency_ms": "DOUBLE",
    "question": "VARCHAR",
    "rating": "INTEGER",
    "score": "INTEGER",
    "comment": "VARCHAR",
    "reason": "VARCHAR",
    "handoff_id": "VARCHAR",
    "hub": "VARCHAR",
}
_NAMES = ", ".join(f'"{name}"' for name in COLUMNS)
_READ = ", ".join(
    f"\"{name}\": '{'VARCHAR' if name == 'at' else kind}'" for name, kind in COLUMNS.items()
)
EVENTS_TABLE_SQL = (
    "CREATE TABLE events (" + ", ".join(f'"{name}" {kind}' for name, kind in COLUMNS.items()) + ")"
)
# One row per event up to the end of the period (a report tells how things stood then), one copy
# of each event_id (a retried stream batch may have written an event twice); timestamps as UTC.
EVENTS_SQL = f"""
INSERT INTO events
SELECT {_NAMES} FROM (
    SELECT * REPLACE (CAST(rtrim("at", 'Z') AS TIMESTAMP) AS "at"),
           row_number() OVER (PARTITION BY event_id) AS copies
    FROM read_json($files, format = 'newline_delimited', compression = 'gzip',
        columns = {{{_READ}}})
) WHERE copies = 1 AND "at" < $until
"""

# Each conversation started in the period, and its outcome at the end of the period. Precedence
# as Copilot Studio's: escalated, else resolved, else abandoned (engaged, then no customer
# message for the copilot's limit before the end of the period), else ended (goodbye, or a hub
# closed it), else in progress.
CONVERSATIONS_SQL = """
CREATE TABLE conversations AS
WITH c AS (
    SELECT conversation_id,
        min("at") FILTER (WHERE type = 'conversation_started') AS started,
        max("at") FILTER (WHERE type = 'turn') AS last_turn,
        count(*) FILTER (WHERE type = 'turn' AND outcome <> 'system') > 0 AS engaged,
        count(*) FILTER (WHERE type = 'escalated') > 0 AS escalated,
        count(*) FILTER (WHERE type = 'resolved') > 0 AS resolved,
        count(*) FILTER (WHERE type = 'ended') > 0 AS ended
    FROM events GROUP BY conversation_id
)
SELECT *,
    CASE
        WHEN NOT engaged THEN 'unengaged'
        WHEN escalated THEN 'escalated'
        WHEN resolved THEN 'resolved'
        WHEN last_turn < $idle_before THEN 'abandoned'
        WHEN ended THEN 'ended'
        ELSE 'in_progress'
    END AS outcome
FROM c
WHERE started >= $since AND started < $until
"""

SUMMARY_SQL = """
SELECT count(*) AS conversations,
    count(*) FILTER (WHERE engaged) AS engaged,
    count(*) FILTER (WHERE outcome = 'resolved') AS resolved,
    count(*) FILTER (WHERE outcome = 'escalated') AS escalated,
    count(*) FILTER (WHERE outcome = 'abandoned') AS abandoned,
    count(*) FILTER (WHERE outcome = 'ended') AS ended,
    count(*) FILTER (WHERE outcome = 'in_progress') AS in_progress
FROM conversations
"""

# Figures of the period's conversations' events.
IN_PERIOD = "conversation_id IN (SELECT conversation_id FROM conversations)"

TURNS_SQL = f"""
SELECT count(*) AS turns,
    count(*) FILTER (WHERE outcome = 'knowledge') AS knowledge,
    count(*) FILTER (WHERE outcome = 'topic') AS topic,
    count(*) FILTER (WHERE outcome IN {NO_MATCH_OUTCOMES}) AS no_match,
    count(*) FILTER (WHERE outcome = 'escalation_offer') AS escalation_offers,
    count(*) FILTER (WHERE outcome = 'choices') AS choices,
    count(*) FILTER (WHERE outcome = 'agent') AS to_agent,
    round(quantile_cont(latency_ms, 0.5) FILTER (WHERE outcome <> 'agent'), 1) AS latency_p50_ms,
    round(quantile_cont(latency_ms, 0.95) FILTER (WHERE outcome <> 'agent'), 1) AS latency_p95_ms,
    round(avg(confidence) FILTER (WHERE outcome = 'knowledge'), 3) AS answer_confidence
FROM events WHERE type = 'turn' AND {IN_PERIOD}
"""

# The last rating given on each answer counts.
FEEDBACK_SQL = f"""
CREATE TABLE feedback AS
SELECT * FROM (
    SELECT conversation_id, seq, rating, citations, comment,
        row_number() OVER (PARTITION BY conversation_id, seq ORDER BY "at" DESC) AS nth
    FROM events WHERE type = 'feedback' AND {IN_PERIOD}
) WHERE nth = 1
"""

# The last survey answer of each conversation counts.
CSAT_SQL = f"""
CREATE TABLE csat AS
SELECT * FROM (
    SELECT conversation_id, score, comment, "at",
        row_number() OVER (PARTITION BY conversation_id ORDER BY "at" DESC) AS nth
    FROM events WHERE type = 'csat' AND {IN_PERIOD}
) WHERE nth = 1
"""

# Each hand-off of the period's conversations: requested, first agent, ended, failed.
HANDOFF_TABLE_SQL = f"""
CREATE TABLE handoffs AS
SELECT * FROM (
    SELECT handoff_id, min(conversation_id) AS conversation_id,
        min("at") FILTER (WHERE type = 'escalated') AS requested,
        min("at") FILTER (WHERE type = 'agent_joined') AS joined,
        min("at") FILTER (WHERE type = 'handoff_ended') AS ended,
        count(*) FILTER (WHERE type = 'handoff_failed') > 0 AS failed
    FROM events WHERE handoff_id IS NOT NULL AND {IN_PERIOD}
    GROUP BY handoff_id
) WHERE requested IS NOT NULL
"""

# A hand-off's wait (requested -> first agent) and handling time (first agent -> ended).
WAIT_S = "date_diff('millisecond', requested, joined) / 1000.0"
HANDOFFS_SQL = f"""
SELECT
    round(quantile_cont({WAIT_S}, 0.5), 1) AS wait_p50_s,
    round(quantile_cont({WAIT_S}, 0.9), 1) AS wait_p90_s,
    round(quantile_cont(date_diff('millisecond', joined, ended) / 1000.0, 0.5), 1) AS handle_p50_s,
    count(*) AS handoffs,
    count(joined) AS answered,
    count(*) FILTER (WHERE failed) AS failed
FROM handoffs
"""

# A day is the day the conversations started; their feedback and hand-offs count on it.
DAILY_SQL = f"""
WITH per_day AS (
    SELECT CAST(started AS DATE) AS day,
        count(*) AS conversations,
        count(*) FILTER (WHERE engaged) AS engaged,
        count(*) FILTER (WHERE outcome = 'resolved') AS resolved,
        count(*) FILTER (WHERE outcome = 'escalated') AS escalated,
        count(*) FILTER (WHERE outcome = 'abandoned') AS abandoned,
        avg(s.score) AS csat,
        count(s.score) AS csat_responses
    FROM conversations c LEFT JOIN csat s USING (conversation_id)
    GROUP BY 1
), rated AS (
    SELECT CAST(c.started AS DATE) AS day,
        count(*) FILTER (WHERE f.rating > 0) AS thumbs_up,
        count(*) FILTER (WHERE f.rating < 0) AS thumbs_down
    FROM feedback f JOIN conversations c USING (conversation_id) GROUP BY 1
), waited AS (
    SELECT CAST(c.started AS DATE) AS day,
        round(quantile_cont({WAIT_S}, 0.5), 1) AS handoff_wait_p50_s
    FROM handoffs h JOIN conversations c USING (conversation_id)
    WHERE h.joined IS NOT NULL GROUP BY 1
)
SELECT per_day.*, coalesce(rated.thumbs_up, 0) AS thumbs_up,
    coalesce(rated.thumbs_down, 0) AS thumbs_down, waited.handoff_wait_p50_s
FROM per_day LEFT JOIN rated USING (day) LEFT JOIN waited USING (day)
ORDER BY day
"""

CITED_SQL = f"""
SELECT doc, count(*) AS n FROM (
    SELECT unnest(citations) AS doc FROM events
    WHERE type = 'turn' AND outcome = 'knowledge' AND {IN_PERIOD}
) GROUP BY doc ORDER BY n DESC, doc LIMIT $top
"""

DOWNVOTED_SQL = """
SELECT doc, count(*) AS n FROM (
    SELECT unnest(citations) AS doc FROM feedback WHERE rating < 0
) GROUP BY doc ORDER BY n DESC, doc LIMIT $top
"""

UNANSWERED_SQL = f"""
SELECT question FROM events
WHERE type = 'turn' AND outcome IN {NO_MATCH_OUTCOMES} AND question IS NOT NULL
    AND {IN_PERIOD}
ORDER BY "at" DESC LIMIT {UNANSWERED_SAMPLE}
"""


class Rates(BaseModel):
    """Shares of conversations (docs/analytics.md): engagement of all, the rest of engaged."""

    engagement: float | None
    resolution: float | None
    escalation: float | None
    abandon: float | None


class Outcomes(BaseModel):
    conversations: int
    engaged: int
    resolved: int
    escalated: int
    abandoned: int
    ended: int
    in_progress: int


class Turns(BaseModel):
    turns: int
    knowledge: int
    topic: int
    no_match: int
    escalation_offers: int
    choices: int
    to_agent: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    answer_confidence: float | None = Field(description="Mean gate confidence of answers.")


class Csat(BaseModel):
    responses: int
    average: float | None
    distribution: dict[str, int] = Field(description="Responses per score, '1' to '5'.")
    satisfied: float | None = Field(description="Share of scores of 4 or 5.")


class Feedback(BaseModel):
    up: int
    down: int


class Handoffs(BaseModel):
    handoffs: int
    answered: int = Field(description="Hand-offs an agent joined.")
    failed: int
    wait_p50_s: float | None
    wait_p90_s: float | None
    handle_p50_s: float | None


class Day(BaseModel):
    day: date
    conversations: int
    engaged: int
    resolved: int
    escalated: int
    abandoned: int
    csat: float | None
    csat_responses: int
    thumbs_up: int
    thumbs_down: int
    handoff_wait_p50_s: float | None


class Count(BaseModel):
    name: str
    count: int


class QuestionGroup(BaseModel):
    label: str
    count: int
    examples: list[str]


class AnalyticsReport(BaseModel):
    copilot_id: str
    since: datetime
    until: datetime
    outcomes: Outcomes
    rates: Rates
    turns: Turns
    csat: Csat
    feedback: Feedback
    handoffs: Handoffs
    daily: list[Day]
    unanswered: list[QuestionGroup] = Field(
        description="The no-match questions grouped by meaning, the largest groups first."
    )
    most_cited: list[Count]
    most_downvoted: list[Count]
    events: int = Field(description="Events read (deduplicated).")
    events_lost: int = Field(
        description="Events of the whole deployment the archive gave up on in the period "
        "(the stream's on-failure queue); 0 when nothing was lost."
    )
    query_ms: float


@dataclass(frozen=True)
class Period:
    since: datetime
    until: datetime

    @property
    def days(self) -> list[str]:
        first, last = self.since.date(), (self.until - timedelta(microseconds=1)).date()
        return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def parse_period(since: str | None, until: str | None, now: datetime | None = None) -> Period:
    """``since``: '7d', '24h' or an ISO date/time (default 7d); ``until``: an ISO date/time
    (default now; a report tells how things stood then, so one ending in the future counts
    the conversations idle until then as abandoned). A 400 that says what to send otherwise."""
    now = now or datetime.now(UTC)
    end = _instant(until, "until") if until else now
    raw = (since or "7d").strip()
    if raw[:-1].isdigit() and raw[-1:] in ("d", "h"):
        amount = int(raw[:-1])
        start = end - (timedelta(days=amount) if raw[-1] == "d" else timedelta(hours=amount))
    else:
        start = _instant(raw, "since")
    if start >= end:
        raise BadRequestError("'since' must be before 'until'", field="since")
    if end - start > timedelta(days=MAX_DAYS):
        raise BadRequestError(f"a report covers at most {MAX_DAYS} days", field="since")
    return Period(start, end)


def _instant(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise BadRequestError(
            f"'{name}' must be like 7d, 24h, 2026-12-01 or 2026-12-01T09:00:00Z", field=name
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


class ArchiveCache:
    """The archive's objects on local disk (they never change once written, but for a stream
    batch written again with the same content), keyed by their ETag: a report downloads only
    what is new since the last one in this process."""

    def __init__(self, archive: BlobStore, directory: Path | None = None) -> None:
        self._archive = archive
        self._dir = directory or Path(tempfile.gettempdir()) / "copilot-analytics-cache"
        self._lock = threading.Lock()

    def files(self, copilot_id: str, period: Period) -> list[str]:
        self._dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for day in period.days:
            for info in self._archive.list(partition(copilot_id, day)):
                name = hashlib.sha256(f"{info.key}:{info.etag}".encode()).hexdigest()[:32]
                path = self._dir / f"{name}.jsonl.gz"
                if not path.exists():
                    stored = self._archive.get(info.key, MAX_OBJECT_BYTES)
                    if stored is None:
                        continue
                    partial = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.part")
                    partial.write_bytes(stored.body)
                    partial.replace(path)
                paths.append(str(path))
        return paths

    def lost(self, period: Period) -> int:
        import json

        total = 0
        for day in period.days:
            for info in self._archive.list(f"{LOST_PREFIX}dt={day}/"):
                stored = self._archive.get(info.key, 1024 * 1024)
                if stored is not None:
                    total += int(json.loads(stored.body).get("events", 0))
        return total


class AnalyticsReporter:
    def __init__(
        self,
        archive: BlobStore,
        embedder: Callable[[], Embeddings] | None = None,
        cluster_threshold: float | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self._cache = ArchiveCache(archive, cache_dir)
        self._embedder = embedder
        self._threshold = cluster_threshold

    def report(
        self,
        copilot_id: str,
        period: Period,
        *,
        abandon_after: timedelta = timedelta(minutes=30),
        top: int = 10,
    ) -> AnalyticsReport:
        started = time.perf_counter()
        con = self._events(copilot_id, period)
        try:
            until = _naive(period.until)
            con.execute(
                CONVERSATIONS_SQL,
                {
                    "since": _naive(period.since),
                    "until": until,
                    "idle_before": until - abandon_after,
                },
            )
            con.execute(FEEDBACK_SQL)
            con.execute(CSAT_SQL)
            con.execute(HANDOFF_TABLE_SQL)
            outcomes = Outcomes(**_row(con, SUMMARY_SQL))
            turns = _row(con, TURNS_SQL)
            scores = con.execute("SELECT score, count(*) FROM csat GROUP BY 1").fetchall()
            feedback = _row(
                con,
                "SELECT count(*) FILTER (WHERE rating > 0) AS up, "
                "count(*) FILTER (WHERE rating < 0) AS down FROM feedback",
            )
            handoffs = _row(con, HANDOFFS_SQL)
            daily = [Day(**r) for r in _rows(con, DAILY_SQL)]
            cited = [
                Count(name=d, count=n) for d, n in con.execute(CITED_SQL, {"top": top}).fetchall()
            ]
            downvoted = [
                Count(name=d, count=n)
                for d, n in con.execute(DOWNVOTED_SQL, {"top": top}).fetchall()
            ]
            questions = [q for (q,) in con.execute(UNANSWERED_SQL).fetchall()]
            (events,) = con.execute("SELECT count(*) FROM events").fetchone() or (0,)
        finally:
            con.close()
        return AnalyticsReport(
            copilot_id=copilot_id,
            since=period.since,
            until=period.until,
            outcomes=outcomes,
            rates=_rates(outcomes),
            turns=Turns(**turns),
            csat=_csat(scores),
            feedback=Feedback(**feedback),
            handoffs=Handoffs(**handoffs),
            daily=daily,
            unanswered=self._groups(questions, top),
            most_cited=cited,
            most_downvoted=downvoted,
            events=int(events),
            events_lost=self._cache.lost(period),
            query_ms=round((time.perf_counter() - started) * 1000, 1),
        )

    def started(self, copilot_id: str, period: Period) -> list[str]:
        """The conversations started in the period, oldest first."""
        con = self._events(copilot_id, period)
        try:
            rows = con.execute(
                "SELECT conversation_id FROM events WHERE type = 'conversation_started' "
                'AND "at" >= $since GROUP BY 1 ORDER BY min("at"), 1',
                {"since": _naive(period.since)},
            ).fetchall()
        finally:
            con.close()
        return [r[0] for r in rows]

    def _events(self, copilot_id: str, period: Period) -> Any:
        """A DuckDB connection holding the period's events (table ``events``)."""
        import duckdb

        files = self._cache.files(copilot_id, period)
        con = duckdb.connect()
        con.execute(EVENTS_TABLE_SQL)
        if files:
            con.execute(EVENTS_SQL, {"files": files, "until": _naive(period.until)})
        return con

    def _groups(self, questions: Sequence[str], top: int) -> list[QuestionGroup]:
        if not questions:
            return []
        if self._embedder is None:
            counts: dict[str, int] = {}
            for q in questions:
                counts[q] = counts.get(q, 0) + 1
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
            return [QuestionGroup(label=q, count=n, examples=[q]) for q, n in ranked]
        from copilot.analytics.clusters import MINILM_THRESHOLD, cluster_questions

        clusters = cluster_questions(
            questions, self._embedder(), threshold=self._threshold or MINILM_THRESHOLD, limit=top
        )
        return [QuestionGroup(label=c.label, count=c.count, examples=c.examples) for c in clusters]


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def _row(con: Any, sql: str) -> dict[str, Any]:
    return _rows(con, sql)[0]


def _rows(con: Any, sql: str) -> list[dict[str, Any]]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _rates(o: Outcomes) -> Rates:
    return Rates(
        engagement=_share(o.engaged, o.conversations),
        resolution=_share(o.resolved, o.engaged),
        escalation=_share(o.escalated, o.engaged),
        abandon=_share(o.abandoned, o.engaged),
    )


def _csat(scores: list[tuple[int, int]]) -> Csat:
    distribution = {str(s): 0 for s in range(1, 6)}
    for score, n in scores:
        distribution[str(score)] = int(n)
    responses = sum(distribution.values())
    total = sum(int(s) * n for s, n in distribution.items())
    good = distribution["4"] + distribution["5"]
    return Csat(
        responses=responses,
        average=round(total / responses, 2) if responses else None,
        distribution=distribution,
        satisfied=_share(good, responses),
    )
