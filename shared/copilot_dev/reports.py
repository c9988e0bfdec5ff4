"""The analytics report as terminal tables (`copilot analytics`)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from copilot.analytics.report import AnalyticsReport


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _num(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:g}{unit}"


def print_report(console: Console, r: AnalyticsReport) -> None:
    o, rates = r.outcomes, r.rates
    console.print(
        f"[bold]Copilot {r.copilot_id}[/bold]  {r.since:%Y-%m-%d %H:%M} to "
        f"{r.until:%Y-%m-%d %H:%M} UTC  ({r.events} events, {r.query_ms:.0f} ms)",
        highlight=False,
    )
    summary = Table("figure", "value", title="Conversations")
    rows = [
        ("conversations", str(o.conversations)),
        ("engaged", f"{o.engaged} ({_pct(rates.engagement)})"),
        ("resolved", f"{o.resolved} ({_pct(rates.resolution)} of engaged)"),
        ("escalated", f"{o.escalated} ({_pct(rates.escalation)} of engaged)"),
        ("abandoned", f"{o.abandoned} ({_pct(rates.abandon)} of engaged)"),
        ("ended", str(o.ended)),
        ("in progress", str(o.in_progress)),
        ("CSAT", f"{_num(r.csat.average)} from {r.csat.responses} ({_pct(r.csat.satisfied)} 4-5)"),
        ("answer feedback", f"{r.feedback.up} up, {r.feedback.down} down"),
        (
            "hand-offs",
            f"{r.handoffs.handoffs} ({r.handoffs.answered} answered, {r.handoffs.failed} failed); "
            f"wait p50 {_num(r.handoffs.wait_p50_s, ' s')}, p90 {_num(r.handoffs.wait_p90_s, ' s')};"
            f" handled p50 {_num(r.handoffs.handle_p50_s, ' s')}",
        ),
        (
            "turns",
            f"{r.turns.turns}: {r.turns.knowledge} answered from knowledge, {r.turns.topic} by "
            f"topics, {r.turns.no_match} no match ({r.turns.escalation_offers} with an offer of a "
            f"person), {r.turns.to_agent} to agents",
        ),
        (
            "reply time",
            f"p50 {_num(r.turns.latency_p50_ms, ' ms')}, p95 {_num(r.turns.latency_p95_ms, ' ms')}",
        ),
    ]
    if r.events_lost:
        rows.append(("[red]events lost[/red]", f"[red]{r.events_lost}[/red]"))
    for name, value in rows:
        summary.add_row(name, value)
    console.print(summary)
    if r.daily:
        daily = Table(
            "day", "conversations", "engaged", "resolved", "escalated", "abandoned", "CSAT"
        )
        for d in r.daily:
            daily.add_row(
                d.day.isoformat(),
                str(d.conversations),
                str(d.engaged),
                str(d.resolved),
                str(d.escalated),
                str(d.abandoned),
                _num(round(d.csat, 2) if d.csat is not None else None),
            )
        console.print(daily)
    unanswered = Table("asked", "unanswered question (examples)", title="Top unanswered questions")
    for group in r.unanswered:
        others = [e for e in group.examples if e != group.label]
        unanswered.add_row(
            str(group.count), group.label + (f"  ({'; '.join(others)})" if others else "")
        )
    console.print(unanswered)
    docs = Table("document", "cited", "down-voted", title="Documents")
    down = {c.name: c.count for c in r.most_downvoted}
    names = [c.name for c in r.most_cited] + [
        n for n in down if n not in {c.name for c in r.most_cited}
    ]
    cited = {c.name: c.count for c in r.most_cited}
    for name in names:
        docs.add_row(name, str(cited.get(name, "-")), str(down.get(name, 0)))
    console.print(docs)
