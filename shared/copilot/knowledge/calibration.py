"""Calibrating a copilot's answer bar on its own labelled questions.

The default bars (``answer.THRESHOLDS``) were set on public data; a copilot's knowledge and
its customers' questions sit differently (on stackfaq the bar that declines 85 % of the
unanswerable questions is 0.60, on mtrag 0.50). A team labels some of its customers' real
questions — answered by which file, or not answerable from the knowledge — and the copilot
measures each one as a turn would (earlier turns replayed, subjects carried, follow-ups
condensed): the gate's confidence, and the files an answer would cite at any bar. From that
the figures at every bar follow without asking again, and the bar that declines the share of
unanswerable questions the team asks for is the copilot's ``answer_bar``. The gate may also
credit the best document's lead over the next (``answer_margin_weight``): on knowledge of many
alike entries (an FAQ) a question none of them answers fits several about equally, one that an
entry answers fits it clearly best. The calibration tries a few weights and keeps the one
that answers most at the decline asked for (weight 0 where the lead does not help).

Used by the admin API (``POST /admin/copilots/{id}/calibration``: measures a batch), by
``copilot eval --calibrate`` (sends the pack in batches, prints the sweep, sets the bar) and
by ``bench/calibrate.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from copilot.schema import Strict

if TYPE_CHECKING:
    from copilot.admin.models import Copilot
    from copilot.knowledge.answer import KnowledgeAnswerer

MAX_BATCH = 50  # questions a request measures (a batch takes ~1–2 s on a warm function)
BARS = [x / 100 for x in range(30, 81)]
MARGIN_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
DEFAULT_DECLINE = 0.85


class LabelledQuestion(Strict):
    question: str = Field(min_length=1, max_length=2000)
    history: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="The customer's earlier messages in the conversation, oldest first.",
    )
    answerable: bool | None = Field(
        description="true: the knowledge holds the answer (in gold_files); false: it does "
        "not, and the right reply is the no-match message; null: not counted."
    )
    gold_files: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="The files (names, or URLs of web pages) that hold the answer.",
    )


class CalibrationRequest(Strict):
    questions: list[LabelledQuestion] = Field(min_length=1, max_length=MAX_BATCH)


class MeasuredSource(BaseModel):
    file: str = Field(description="The cited document (file name or URL), as citations name it.")
    confidence: float


class Measured(BaseModel):
    confidence: float = Field(
        description="The best passage's confidence, as the gate weighs it without the margin "
        "(0: an unknown name)."
    )
    margin: float = Field(
        0.0,
        description="The best document's lead over the next document's confidence (at most "
        "0.2): the gate adds answer_margin_weight times it.",
    )
    sources: list[MeasuredSource] = Field(
        description="What an answer would cite, best first: at bar B the first source when "
        "confidence >= B, and each further one whose own confidence >= B."
    )

    def cited_at(self, bar: float, margin_weight: float = 0.0) -> list[str]:
        if self.confidence + margin_weight * self.margin < bar:
            return []
        return [s.file for i, s in enumerate(self.sources) if i == 0 or s.confidence >= bar]


class CalibrationResult(BaseModel):
    bar_in_use: float = Field(description="The copilot's bar now (medium, or its answer_bar).")
    margin_weight_in_use: float = Field(
        0.0, description="The copilot's margin weight now (its answer_margin_weight, or 0)."
    )
    measured: list[Measured]


class SweepRow(BaseModel):
    bar: float
    margin_weight: float = 0.0
    answered: float | None = Field(description="Share of answerable questions answered.")
    answered_with_gold: float | None = Field(description="... answered citing a gold file.")
    answered_wrong_doc: float | None = Field(
        description="... answered, and no cited file is gold: the confident wrong answer."
    )
    declined_unanswerable: float | None = Field(
        description="Share of unanswerable questions given the no-match message."
    )


def measure(answerer: KnowledgeAnswerer, copilot: Copilot, question: LabelledQuestion) -> Measured:
    """One labelled question, asked as the last turn of its conversation."""
    from copilot.knowledge.answer import confidence, doc_margin, gate_confidence, supported_at

    history: list[_Said] = []
    subjects: list[str] = []
    for earlier in question.history:
        replayed = answerer.consult(
            copilot, earlier, _fixed(tuple(history)), subjects, ask_which=False
        )
        subjects = replayed.subjects
        history.append(_Said("customer", earlier))
    scope, _ = answerer.scope(copilot.copilot_id, question.question, subjects)
    policy = answerer.policy
    retrieval = answerer.search(
        copilot.copilot_id,
        question.question,
        lambda: history,
        scope,
        policy.bar(copilot),
        policy.margin_weight_for(copilot),
    )
    gate = gate_confidence(question.question, retrieval, policy, margin_weight=0.0)
    picked = supported_at(0.0, retrieval, question.question, policy, 0.0) if gate > 0 else []
    return Measured(
        confidence=round(gate, 4),
        margin=round(doc_margin(retrieval, policy), 4) if gate > 0 else 0.0,
        sources=[
            MeasuredSource(
                file=c.chunk.doc_key,
                confidence=round(confidence(c, policy), 4),
            )
            for c in picked
        ],
    )


def _fixed(said: tuple[_Said, ...]) -> Callable[[], tuple[_Said, ...]]:
    return lambda: said


class _Said:
    def __init__(self, role: str, text: str) -> None:
        self.role = role
        self.text = text


def _basename(name: str) -> str:
    """Files are compared by name, as ``copilot eval`` compares citations with gold files."""
    return PurePosixPath(name.replace("\\", "/")).name


def sweep(
    questions: Sequence[LabelledQuestion],
    measured: Sequence[Measured],
    bars: Sequence[float] = BARS,
    margin_weight: float = 0.0,
) -> list[SweepRow]:
    """The figures at each bar (with this margin weight), from one measurement per question."""
    answerable = [
        (m, {_basename(g) for g in q.gold_files})
        for q, m in zip(questions, measured, strict=True)
        if q.answerable
    ]
    unanswerable = [m for q, m in zip(questions, measured, strict=True) if q.answerable is False]
    rows = []
    for bar in bars:
        cited = [
            (set(map(_basename, m.cited_at(bar, margin_weight))), gold) for m, gold in answerable
        ]
        answered = [(c, g) for c, g in cited if c]
        n = len(answerable)
        rows.append(
            SweepRow(
                bar=bar,
                margin_weight=margin_weight,
                answered=_share(len(answered), n),
                answered_with_gold=_share(sum(bool(c & g) for c, g in answered), n),
                answered_wrong_doc=_share(sum(not c & g for c, g in answered), n),
                declined_unanswerable=_share(
                    sum(not m.cited_at(bar, margin_weight) for m in unanswerable),
                    len(unanswerable),
                ),
            )
        )
    return rows


def recommend(rows: Sequence[SweepRow], decline: float = DEFAULT_DECLINE) -> SweepRow | None:
    """The lowest bar that declines at least ``decline`` of the unanswerable questions (the
    one that answers most while declining enough); None without unanswerable questions, or
    when no bar declines enough."""
    for row in sorted(rows, key=lambda r: r.bar):
        if row.declined_unanswerable is not None and row.declined_unanswerable >= decline:
            return row
    return None


def choose(
    questions: Sequence[LabelledQuestion],
    measured: Sequence[Measured],
    decline: float = DEFAULT_DECLINE,
    weights: Sequence[float] = MARGIN_WEIGHTS,
) -> tuple[SweepRow | None, list[SweepRow]]:
    """The gate to set: for each margin weight the lowest bar that declines ``decline`` of
    the unanswerable questions, and of those the one that answers the most answerable
    questions with a gold file cited (ties: the smaller weight). Returns it (None when no
    bar declines enough) and the sweep at its weight (at weight 0 without a choice)."""
    sweeps = {w: sweep(questions, measured, margin_weight=w) for w in weights}
    chosen = [(row, sweeps[w]) for w in weights if (row := recommend(sweeps[w], decline))]
    if not chosen:
        return None, sweeps.get(0.0) or sweep(questions, measured)
    # max keeps the first of equals: the smaller weight
    return max(chosen, key=lambda pair: pair[0].answered_with_gold or 0)


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None
