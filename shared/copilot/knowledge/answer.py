"""Knowledge answers: hybrid retrieval, a confidence gate, and a grounded, cited answer.

The offline default composes the answer from the best-supported sentences of the passages
(no LLM); with an LLM configured, generation.py writes it from the same numbered sources.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from copilot.admin.models import Copilot
from copilot.errors import UnavailableError
from copilot.knowledge.models import Answer, Chunk, Citation, table_caption, title_path
from copilot.knowledge.retrieval import (
    Candidate,
    History,
    HybridRetriever,
    Retrieval,
    condense,
    coverage,
)
from copilot.observability import timed
from copilot.text import LIST_MARKER, analyze, sentences

log = logging.getLogger(__name__)

SNIPPET_CHARS = 240
LEAD_BONUS = 0.15

# Confidence = the dense similarity of the best passage or of its heading (all-MiniLM-L6-v2
# cosine), blended with a little of the IDF-weighted coverage of the question's terms.
# Calibrated on the eval packs' unanswerable questions, both packs together
# (docs/answer-quality.md, bench/calibrate.py); strictness moves the bar like Copilot
# Studio's content-moderation levels.
THRESHOLDS = {"low": 0.48, "medium": 0.54, "high": 0.60}


@dataclass(frozen=True)
class AnswerPolicy:
    coverage_weight: float = 0.2
    max_sentences: int = 3
    max_citations: int = 3
    related_ratio: float = 0.8  # further sources: fused score within this share of the best
    thresholds: dict[str, float] = field(default_factory=lambda: dict(THRESHOLDS))


def confidence(candidate: Candidate, policy: AnswerPolicy) -> float:
    """The passage's dense similarity to the question, or its heading's or one of its table
    rows' when that is higher (a question phrased like an FAQ's question or a page's title,
    a question about one row of a price list), blended with the IDF-weighted share of the
    question's terms the passage holds."""
    w = policy.coverage_weight
    dense = max(candidate.cosine or 0.0, candidate.heading or 0.0, candidate.row or 0.0, 0.0)
    return w * candidate.coverage + (1 - w) * dense


_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+[A-Za-z]*\b")
# "I'm Sarah", "my name is Sarah Jones": the customer's own name is not a question's subject.
_SELF_INTRO = re.compile(
    r"(?i:\b(?:i'?m|i am|name is|name's|this is|call me))\s+((?:[A-Z][a-z]+\s*){1,3})"
)


_PLEASANTRIES = re.compile(
    r"^\s*(?:(?i:hi|hello|hey|hiya|good (?:morning|afternoon|evening)|greetings)\b[\s,!.]*)?"
    r"(?:(?i:i'?m|i am|my name is|my name's|this is)\s+(?:[A-Z][a-z]+\s*){1,3}[\s,!.]*)?"
)


def without_pleasantries(question: str) -> str:
    """ "Hi, I'm Sarah, is the shop open on Monday?" is searched as "is the shop open on
    Monday?": a greeting and a name only dilute what the question is about."""
    rest = _PLEASANTRIES.sub("", question, count=1).strip()
    return rest if len(rest.split()) >= 2 else question


def unknown_names(question: str, retrieval: Retrieval) -> list[str]:
    """Names the customer asks about (capitalised words, not opening a sentence) that occur
    nowhere in the copilot's knowledge: "the locker code at the Qwertyville depot" must not be
    answered with another depot's code, however similar the passage."""
    lexical = retrieval.lexical
    if lexical is None:
        return []
    unknown = []
    introduced = {w for m in _SELF_INTRO.finditer(question) for w in m.group(1).split()}
    for word in _NAME.findall(question.strip()):
        if word in introduced:
            continue
        terms = analyze(word)
        if not terms or any(lexical.df(t) for t in terms):
            continue
        # Chunks newer than the lexical snapshot count as knowledge too.
        if any(
            set(terms) <= lexical.chunk_terms(c.chunk)
            for c in retrieval.candidates
            if not lexical.contains(c.chunk.chunk_id)
        ):
            continue
        unknown.append(word)
    return unknown


def gate_confidence(question: str, retrieval: Retrieval, policy: AnswerPolicy) -> float:
    """How confident the copilot may be in its best passage (0 for an unknown name)."""
    if not retrieval.candidates or unknown_names(question, retrieval):
        return 0.0
    return max(confidence(c, policy) for c in retrieval.candidates[:5])


Generator = Callable[[Copilot, str, Retrieval, list[Candidate]], "Answer | None"]


class KnowledgeAnswerer:
    def __init__(
        self,
        retriever: HybridRetriever,
        policy: AnswerPolicy | None = None,
        generator: Generator | None = None,
        condenser: Callable[[str, History], str] | None = None,
    ) -> None:
        self._retriever = retriever
        self._policy = policy or AnswerPolicy()
        self._generator = generator
        self._condense = condenser or condense

    def retrieve(self, copilot_id: str, question: str) -> Retrieval:
        return self._retriever.retrieve(copilot_id, question)

    def search(self, copilot_id: str, question: str, history: History = lambda: ()) -> Retrieval:
        """The retrieval an answer is made from: the question without pleasantries,
        condensed with the conversation if it is a follow-up."""
        asked = without_pleasantries(question)
        query = self._condense(asked, history)
        retrieval = self._retriever.retrieve(copilot_id, query)
        if query != asked:
            # What looked like a follow-up may stand on its own ("What is EBT?", a new
            # subject): the question as asked is searched too, and the better-supported
            # search answers.
            alone = self._retriever.retrieve(copilot_id, asked)
            if gate_confidence(question, alone, self._policy) > gate_confidence(
                question, retrieval, self._policy
            ):
                return alone
            retrieval.asked = asked
        return retrieval

    def answer(
        self, copilot: Copilot, question: str, history: History = lambda: ()
    ) -> Answer | None:
        with timed("retrieval"):
            retrieval = self.search(copilot.copilot_id, question, history)
            supported = self.supported(copilot, retrieval, question)
        if not supported:
            return None
        with timed("generation"):
            if self._generator is not None:
                try:
                    return self._generator(copilot, question, retrieval, supported)
                except UnavailableError:
                    # The LLM is down: the customer still gets the grounded extractive answer.
                    log.warning(
                        "LLM unavailable; answering extractively for %s", copilot.copilot_id
                    )
            return self._compose(retrieval, supported)

    def supported(
        self, copilot: Copilot, retrieval: Retrieval, question: str | None = None
    ) -> list[Candidate]:
        """The passages confident enough to answer from, best first (empty: no answer)."""
        p = self._policy
        bar = p.thresholds[copilot.strictness]
        if gate_confidence(question or retrieval.query, retrieval, p) < bar:
            return []
        best = max(retrieval.candidates[:5], key=lambda c: confidence(c, p))
        picked = [best]
        for c in retrieval.candidates:
            if len(picked) >= p.max_citations:
                break
            if c is best or any(c.chunk.doc_key == x.chunk.doc_key for x in picked):
                continue
            if (
                c.fused >= p.related_ratio * retrieval.candidates[0].fused
                and confidence(c, p) >= bar
            ):
                picked.append(c)
        return picked

    def _compose(self, retrieval: Retrieval, supported: list[Candidate]) -> Answer:
        best = supported[0]
        picked = self._best_sentences(retrieval, best.chunk)
        citations = [citation_for(i + 1, c) for i, c in enumerate(supported)]
        text = join_sentences(picked) + " [1]"
        return Answer(text=text + "\n\n" + render_sources(citations), citations=citations)

    def _best_sentences(self, retrieval: Retrieval, chunk: Chunk) -> list[str]:
        """The sentence that best covers the question's (IDF-weighted) terms, and the ones
        that follow it while they carry on (steps, details, a list it introduces). Terms the
        heading already holds are left out: the section is about them, the sentence must
        answer the rest ("Which payment methods do you accept online?" under "Accepted
        payment methods" looks for "online"). When the heading holds them all, the
        section's opening answers, as an FAQ's answer starts at the top. Lexical on
        purpose: embedding every sentence with a transformer would cost more than the turn.
        Opening sentences get a small head start: a passage usually leads with its point.
        In a follow-up the terms it adds count twice: "and on batteries?" after a question
        on frames wants the batteries row of the warranty table, not the frames row."""
        candidates = [s for s in sentences(chunk.text) if len(s) > 2]
        if not candidates:
            return [chunk.text.strip()]
        heading = frozenset(analyze(title_path(chunk.title, chunk.section)))
        # "How long", "how much": the question's phrasing, not words an answer repeats.
        heading |= frozenset(analyze(" ".join(_HOW_MUCH.findall(retrieval.query))))
        scores = [
            coverage(retrieval.lexical, retrieval.query, s, heading)
            + (coverage(retrieval.lexical, retrieval.asked, s, heading) if retrieval.asked else 0.0)
            + LEAD_BONUS / (i + 1)
            for i, s in enumerate(candidates)
        ]
        top = max(range(len(candidates)), key=scores.__getitem__)
        keep = [top]
        if LIST_MARKER.match(candidates[top]):
            # A list item is read with the line that introduces its list ("Contact us if:").
            intro = next(
                (i for i in range(top - 1, -1, -1) if not LIST_MARKER.match(candidates[i])), None
            )
            if intro is not None and _introduces_list(candidates[intro]):
                keep.insert(0, intro)
        items = 0  # of the list the last sentence kept introduced
        for i in range(top + 1, len(candidates)):
            if items or _introduces_list(candidates[keep[-1]]):
                if not LIST_MARKER.match(candidates[i]) or items >= MAX_LIST_ITEMS:
                    break
                items += 1
            elif len(keep) >= self._policy.max_sentences or scores[i] < 0.5 * scores[top]:
                break
            keep.append(i)
        # A question of two parts ("the Portland workshop" + "on Saturday") may need a
        # second sentence for the part the first did not cover; of a follow-up, only what it
        # asks (the earlier question's part has had its answer).
        covered = heading | frozenset(t for i in keep for t in analyze(candidates[i]))
        rest = [
            (coverage(retrieval.lexical, retrieval.asked or retrieval.query, s, covered), i)
            for i, s in enumerate(candidates)
            if i not in keep
        ]
        best_rest = max(rest, default=(0.0, -1))
        if best_rest[0] >= 0.5:  # most of what is left, not a stray common word
            keep.append(best_rest[1])
        caption = [s for s in sentences(table_caption(chunk)) if len(s) > 2]
        if caption and candidates[: len(caption)] == caption and max(keep) >= len(caption):
            # A table row is read with its caption: "Day: Sunday; Hours: 11-4" is whose hours?
            keep = [*range(len(caption)), *(i for i in keep if i >= len(caption))]
        return [candidates[i] for i in sorted(set(keep))]


_HOW_MUCH = re.compile(r"(?i)\bhow\s+(long|much|many|often|far|soon|big|old)\b")
MAX_LIST_ITEMS = 8


def _introduces_list(sentence: str) -> bool:
    return sentence.rstrip("*_ ").endswith(":")


def join_sentences(picked: Sequence[str]) -> str:
    """Sentences run on; list items keep a line each."""
    out = ""
    for s in picked:
        if not out:
            out = LIST_MARKER.sub("", s, count=1)  # an item on its own needs no marker
        elif LIST_MARKER.match(s):
            out += "\n" + s
        else:
            out += " " + s
    return out


def render_sources(citations: Sequence[Citation]) -> str:
    lines = ["Sources:"]
    for c in citations:
        where = title_path(c.title, c.section)
        if c.page:
            where += f", p. {c.page}"
        lines.append(f"[{c.index}] {where} ({c.url or c.source})")
    return "\n".join(lines)


def citation_for(index: int, candidate: Candidate) -> Citation:
    chunk = candidate.chunk
    snippet = " ".join(chunk.text.split())
    if len(snippet) > SNIPPET_CHARS:
        snippet = snippet[: SNIPPET_CHARS - 1].rsplit(" ", 1)[0] + "…"
    return Citation(
        index=index,
        title=chunk.title,
        source=chunk.doc_key,
        section=chunk.section,
        page=chunk.page,
        url=chunk.url,
        snippet=snippet,
    )
