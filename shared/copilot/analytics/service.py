"""What the admin API asks of analytics: a copilot's report, and its transcripts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from copilot.admin.lookup import require_copilot
from copilot.analytics.redaction import redactor_for
from copilot.analytics.report import AnalyticsReport, AnalyticsReporter, Period, parse_period
from copilot.analytics.transcripts import Format, render, transcripts
from copilot.errors import BadRequestError
from copilot.ports import ConversationStore, CopilotRegistry

MAX_TRANSCRIPTS = 5000  # conversations in one export (narrow the period for more)


class AnalyticsService:
    def __init__(
        self,
        copilots: CopilotRegistry,
        conversations: ConversationStore,
        reporter: AnalyticsReporter,
        retention_days: int = 395,
    ) -> None:
        self._copilots = copilots
        self._conversations = conversations
        self._reporter = reporter
        self._retention = timedelta(days=retention_days)

    def report(
        self, copilot_id: str, since: str | None, until: str | None, top: int = 10
    ) -> AnalyticsReport:
        copilot = require_copilot(self._copilots, copilot_id)
        return self._reporter.report(
            copilot.copilot_id,
            self._period(since, until),
            abandon_after=timedelta(minutes=copilot.analytics.abandon_after_minutes),
            top=top,
        )

    def _period(self, since: str | None, until: str | None) -> Period:
        """The period asked for, within the retention (older events are not reported; on AWS
        the bucket's lifecycle rule has deleted them)."""
        period = parse_period(since, until)
        oldest = datetime.now(UTC) - self._retention
        if period.since < oldest:
            period = Period(min(oldest, period.until - timedelta(seconds=1)), period.until)
        return period

    def transcripts(
        self, copilot_id: str, since: str | None, until: str | None, fmt: str
    ) -> tuple[str, int]:
        """The period's conversations as ``fmt`` (jsonl or csv), redacted; and how many."""
        if fmt not in ("jsonl", "csv"):
            raise BadRequestError("'format' must be jsonl or csv", field="format")
        copilot = require_copilot(self._copilots, copilot_id)
        ids = self._reporter.started(copilot.copilot_id, self._period(since, until))
        if len(ids) > MAX_TRANSCRIPTS:
            raise BadRequestError(
                f"{len(ids)} conversations in this period; an export holds at most "
                f"{MAX_TRANSCRIPTS}: ask for a shorter period",
                field="since",
            )
        redactor = redactor_for(copilot.analytics.redact_patterns)
        items = list(transcripts(self._conversations, copilot.copilot_id, ids, redactor))
        chosen: Format = "jsonl" if fmt == "jsonl" else "csv"
        return render(items, chosen), len(items)
