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
from copilot.knowledge.models import (
    TITLE_PATH_SEPARATOR,
    Answer,
    Chunk,
    Citation,
    table_caption,
    title_path,
)
from copilot.knowledge.retrieval import (
    Candidate,
    History,
    HybridRetriever,
    Retrieval,
    condense,
    coverage,
    last_reply,
    previous_question,
    remembered,
)
from copilot.knowledge.subjects import Scope, Subject, SubjectIndex, subjects_of
from copilot.knowledge.vectors import cosine
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
    # The best passage is the most confident of this many fused candidates (the fusion
    # builds the list; the dense similarity picks from it).
    pick_from: int = 5
    max_sentences: int = 3
    max_citations: int = 3
    related_ratio: float = 0.8  # further sources: fused score within this share of the best
    join_unsupported: bool = True  # an unsupported question is searched with the previous one
    # A message that looked like a follow-up but is supported on its own is answered on its
    # own ("and how long does delivery take?" after a question on returns), even when the
    # earlier question's words make the joined search score higher.
    alone_when_supported: bool = True
    # A condensed question (the LLM's) must be this much closer in meaning to the customer's
    # message than their previous question is, or it is taken to have lost their ask.
    faithful_margin: float = 0.05
    subjects: bool = True  # keep to the subjects the conversation is about
    # Sentence choice: below this lexical score the words decide weakly and the sentences'
    # meaning (embedded) is added with this weight.
    weak_words: float = 0.5
    meaning_weight: float = 0.5
    answer_sets_subject: bool = True  # ... including the subject of the last answer's document
    which_margin: float = 0.02  # alike entries of several subjects: ask which one
    max_choices: int = 4
    thresholds: dict[str, float] = field(default_factory=lambda: dict(THRESHOLDS))
    # The gate may credit the best document's lead over the next one (its confidence minus
    # the next document's, at most margin_cap) with this weight; a copilot's calibrated
    # answer_margin_weight replaces it.
    margin_weight: float = 0.0
    margin_cap: float = 0.2

    def bar(self, copilot: Copilot) -> float:
        """The confidence an answer needs for this copilot: its strictness's bar, or, when the
        copilot has a calibrated ``answer_bar`` (its medium bar), that bar moved by the same
        spacing as the defaults' (low: 0.06 lower, high: 0.06 higher)."""
        bar = self.thresholds[copilot.strictness]
        if copilot.answer_bar is None:
            return bar
        return round(copilot.answer_bar + (bar - self.thresholds["medium"]), 4)

    def margin_weight_for(self, copilot: Copilot) -> float:
        """How much the best document's lead counts for this copilot's gate."""
        w = copilot.answer_margin_weight
        return self.margin_weight if w is None else w


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
        # Chunks in no lexical segment yet count as knowledge too.
        if any(
            set(terms) <= lexical.chunk_terms(c.chunk)
            for c in retrieval.candidates
            if not lexical.contains(c.chunk.chunk_id)
        ):
            continue
        unknown.append(word)
    return unknown


def doc_margin(retrieval: Retrieval, policy: AnswerPolicy) -> float:
    """How far the best passage's document is ahead of the next document: the best
    passage's confidence minus that of the best candidate from any other document (at most
    ``policy.margin_cap``). A question that one FAQ entry answers fits that entry clearly
    better than the rest; one that no entry answers tends to fit several about equally."""
    p = policy
    if not retrieval.candidates:
        return 0.0
    best = max(retrieval.candidates[: p.pick_from], key=lambda c: confidence(c, p))
    others = [
        confidence(c, p) for c in retrieval.candidates if c.chunk.doc_key != best.chunk.doc_key
    ]
    lead = confidence(best, p) - max(others, default=0.0)
    return min(max(lead, 0.0), p.margin_cap)


def gate_confidence(
    question: str,
    retrieval: Retrieval,
    policy: AnswerPolicy,
    margin_weight: float | None = None,
) -> float:
    """How confident the copilot may be in its best passage (0 for an unknown name): the
    best passage's confidence, plus ``margin_weight`` (default: the policy's) times its
    document's lead over the next."""
    if not retrieval.candidates or unknown_names(question, retrieval):
        return 0.0
    best = max(confidence(c, policy) for c in retrieval.candidates[: policy.pick_from])
    w = policy.margin_weight if margin_weight is None else margin_weight
    return best + w * doc_margin(retrieval, policy) if w else best


def supported_at(
    bar: float,
    retrieval: Retrieval,
    question: str,
    policy: AnswerPolicy,
    margin_weight: float | None = None,
    gate: float | None = None,
) -> list[Candidate]:
    """The passages an answer cites at this bar, best first (empty: no answer). Further
    sources need their own confidence at the bar (the margin is the best one's). ``gate``:
    the gate's confidence if the caller has it already (gate_confidence)."""
    p = policy
    if gate is None:
        gate = gate_confidence(question, retrieval, p, margin_weight)
    if gate < bar:
        return []
    best = max(retrieval.candidates[: p.pick_from], key=lambda c: confidence(c, p))
    picked = [best]
    for c in retrieval.candidates:
        if len(picked) >= p.max_citations:
            break
        if c is best or any(c.chunk.doc_key == x.chunk.doc_key for x in picked):
            continue
        if c.fused >= p.related_ratio * retrieval.candidates[0].fused and confidence(c, p) >= bar:
            picked.append(c)
    return picked


Generator = Callable[[Copilot, str, Retrieval, list[Candidate]], "Answer | None"]


@dataclass
class Consulted:
    """What the knowledge made of one question in a conversation."""

    answer: Answer | None
    subjects: list[str] = field(default_factory=list)  # keys: what the conversation is about
    choices: list[str] = field(default_factory=list)  # several subjects fit: ask which (names)
    confidence: float | None = None  # the gate's confidence in the best passage (analytics)


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

    @property
    def policy(self) -> AnswerPolicy:
        return self._policy

    def retrieve(self, copilot_id: str, question: str) -> Retrieval:
        return self._retriever.retrieve(copilot_id, question)

    def subjects(self, copilot_id: str) -> SubjectIndex:
        lexical = self._retriever.lexical(copilot_id)
        return subjects_of(lexical) if lexical is not None else SubjectIndex()

    def scope(
        self, copilot_id: str, question: str, subjects: Sequence[str] = ()
    ) -> tuple[Scope | None, list[Subject]]:
        """What the question is about: the subjects it names, else those the conversation
        was about (``subjects``: their keys), and the scope of retrieval they give."""
        index = self.subjects(copilot_id)
        if not index or not self._policy.subjects:
            return None, []
        in_effect = index.mentioned(question) or index.named(subjects)
        return (index.scope(in_effect) if in_effect else None), in_effect

    def search(
        self,
        copilot_id: str,
        question: str,
        history: History = lambda: (),
        scope: Scope | None = None,
        bar: float | None = None,
        margin_weight: float | None = None,
    ) -> Retrieval:
        """The retrieval an answer is made from: the question without pleasantries,
        condensed with the conversation if it is a follow-up, within ``scope``. With
        ``bar``, a question that reads as self-contained but is not supported on its own
        is searched with the customer's previous question too ("how long is the link good
        for?" after "I forgot my password")."""
        p = self._policy
        asked = without_pleasantries(question)
        query = self._condense(asked, history)
        retrieval = self._retriever.retrieve(copilot_id, query, scope)
        if (
            query != asked
            and asked not in query
            and not self._keeps_the_ask(retrieval, asked, history)
        ):
            # A rewrite (the LLM's) that lost what the customer asked, most often the
            # earlier question restated: the rewrite without an LLM stands in for it.
            log.info("condensed question dropped for %s: it lost the customer's ask", copilot_id)
            query = condense(asked, history)
            retrieval = self._retriever.retrieve(copilot_id, query, scope)
        if query != asked and (scope is None or analyze(scope.without_names(asked))):
            # What looked like a follow-up may stand on its own ("What is EBT?", a new
            # subject): the question as asked is searched too, and answers when it is
            # supported on its own or better supported than the joined search (whose score
            # the earlier question's own words lift). Not when all it adds is a name: "And at
            # Kirkwood House?" asks the last question again, about Kirkwood House.
            alone = self._retriever.retrieve(copilot_id, asked, scope)
            on_own = gate_confidence(question, alone, p)
            if on_own > gate_confidence(question, retrieval, p):
                return alone
            if p.alone_when_supported and bar is not None and on_own >= bar:
                return alone
            retrieval.asked = asked
        elif (
            query == asked
            and bar is not None
            and p.join_unsupported
            and gate_confidence(question, retrieval, p, margin_weight) < bar
            and (previous := previous_question(asked, history))
        ):
            joined = self._retriever.retrieve(copilot_id, f"{previous} {asked}", scope)
            if gate_confidence(question, joined, p) > gate_confidence(question, retrieval, p):
                joined.asked = asked
                return joined
        return retrieval

    def _keeps_the_ask(self, rewritten: Retrieval, asked: str, history: History) -> bool:
        """A rewrite keeps the customer's ask when it is closer in meaning to their message
        than their previous question is (by the policy's ``faithful_margin``): "How long do I have to return
        my bike?" for "and how long do I have?" after "Can I return my bike?" does; the
        previous question again does not."""
        previous = previous_question(asked, history)
        if previous is None:
            return True
        said, before = self._retriever.embed_queries([asked, previous])
        margin = self._policy.faithful_margin
        return cosine(rewritten.query_vector, said) >= cosine(before, said) + margin

    def answer(
        self,
        copilot: Copilot,
        question: str,
        history: History = lambda: (),
        subjects: Sequence[str] = (),
    ) -> Answer | None:
        return self.consult(copilot, question, history, subjects).answer

    def consult(
        self,
        copilot: Copilot,
        question: str,
        history: History = lambda: (),
        subjects: Sequence[str] = (),
        *,
        ask_which: bool = True,
    ) -> Consulted:
        """The answer to ``question`` in a conversation about ``subjects`` (keys), and what
        the conversation is about after it: the subjects the question names, else those it
        was about, else those of the document the answer comes from ("Do they charge for
        wifi?" after an answer about Warkworth House is about Warkworth House). When the
        conversation is about no subject yet and the best passages are alike entries of
        different subjects, the customer is asked which one (``ask_which``)."""
        history = remembered(history)
        with timed("retrieval"):
            scope, in_effect = self.scope(copilot.copilot_id, question, subjects)
            bar = self._policy.bar(copilot)
            margin_weight = self._policy.margin_weight_for(copilot)
            retrieval = self.search(
                copilot.copilot_id, question, history, scope, bar, margin_weight
            )
            gated = question or retrieval.query
            # The gate's confidence, once: it decides the answer and is recorded (analytics).
            sure = gate_confidence(gated, retrieval, self._policy, margin_weight)
            supported = supported_at(bar, retrieval, gated, self._policy, margin_weight, sure)
        keys = [s.key for s in in_effect]
        if not supported:
            return Consulted(None, keys, confidence=sure)
        index = self.subjects(copilot.copilot_id)
        if scope is None and index:
            if ask_which and (choices := self._which(copilot, retrieval, index)):
                return Consulted(None, keys, choices, confidence=sure)
            if self._policy.answer_sets_subject:
                keys = [s.key for s in index.of_doc(supported[0].chunk.doc_key)]
        with timed("generation"):
            if self._generator is not None:
                try:
                    answer = self._generator(copilot, question, retrieval, supported)
                    return Consulted(answer, keys, confidence=sure)
                except UnavailableError:
                    # The LLM is down: the customer still gets the grounded extractive answer.
                    log.warning(
                        "LLM unavailable; answering extractively for %s", copilot.copilot_id
                    )
            # A follow-up (the history has been read for it) is not told the same again.
            said = last_reply(history) if retrieval.asked else None
            answer = self._compose(retrieval, supported, said, bar)
            return Consulted(answer, keys, confidence=sure)

    def _which(self, copilot: Copilot, retrieval: Retrieval, index: SubjectIndex) -> list[str]:
        """The subjects to offer when the question fits entries of several equally well
        ("Is there free parking?" with no place named, and 30 places answering it): the
        subjects of the passages within WHICH_MARGIN of the best one's confidence."""
        p = self._policy
        bar = p.bar(copilot)
        scored = sorted(((confidence(c, p), c) for c in retrieval.candidates), key=lambda x: -x[0])
        if not scored or not index.of_doc(scored[0][1].chunk.doc_key):
            return []
        best = scored[0][0]
        names: list[str] = []
        for score, c in scored:
            if score < max(bar, best - p.which_margin):
                break
            of_doc = index.of_doc(c.chunk.doc_key)
            if not of_doc:
                return []  # a passage about no subject answers as well: nothing to ask
            name = of_doc[0].name
            if name not in names:
                names.append(name)
        return names[: p.max_choices] if len(names) > 1 else []

    def supported(
        self, copilot: Copilot, retrieval: Retrieval, question: str | None = None
    ) -> list[Candidate]:
        """The passages confident enough to answer from, best first (empty: no answer)."""
        p = self._policy
        return supported_at(
            p.bar(copilot), retrieval, question or retrieval.query, p, p.margin_weight_for(copilot)
        )

    def _compose(
        self,
        retrieval: Retrieval,
        supported: list[Candidate],
        said: str | None = None,
        bar: float | None = None,
    ) -> Answer:
        """The best passage's best sentences. A follow-up that the last reply already
        answered from these passages ("and what if it expired?" after "the link is valid
        for 60 minutes") is answered with what it did not say: the best new sentence of the
        confident passages (up to FOLLOW_UP_PASSAGES of them), as a person would go on
        rather than repeat."""
        repeated = _said_sentences(said)
        order = list(supported)
        picked, score = self._choose_sentences(
            retrieval, order[0].chunk, repeated, by_heading=_by_heading(order[0])
        )
        if repeated and any(
            _repeats(s, repeated) for s in self._best_sentences(retrieval, order[0].chunk)
        ):
            floor = bar if bar is not None else 0.0
            others = [
                c
                for c in retrieval.candidates[: self._policy.pick_from]
                if c.chunk.chunk_id != order[0].chunk.chunk_id
                and confidence(c, self._policy) >= floor
            ]
            for c in others[: FOLLOW_UP_PASSAGES - 1]:
                fresh, fresh_score = self._choose_sentences(retrieval, c.chunk, repeated)
                if fresh_score > score and not all(_repeats(s, repeated) for s in fresh):
                    picked, score = fresh, fresh_score
                    order = [c, *(x for x in order if x.chunk.doc_key != c.chunk.doc_key)]
                    order = order[: self._policy.max_citations]
        citations = [citation_for(i + 1, c) for i, c in enumerate(order)]
        section = order[0].chunk.section
        if LIST_MARKER.match(picked[0]) and section:
            # An item without the line that introduces its list is read under its section:
            # "Items that can't be returned:" + "- E-bike batteries ... charged or installed"
            picked = [f"{section.split(TITLE_PATH_SEPARATOR)[-1].strip()}:", *picked]
        text = join_sentences(picked) + " [1]"
        return Answer(text=text + "\n\n" + render_sources(citations), citations=citations)

    def _best_sentences(
        self, retrieval: Retrieval, chunk: Chunk, repeated: frozenset[str] = frozenset()
    ) -> list[str]:
        return self._choose_sentences(retrieval, chunk, repeated)[0]

    def _choose_sentences(
        self,
        retrieval: Retrieval,
        chunk: Chunk,
        repeated: frozenset[str] = frozenset(),
        *,
        by_heading: bool = False,
    ) -> tuple[list[str], float]:
        """The sentence that best covers the question's (IDF-weighted) terms, and the ones
        that follow it while they carry on (steps, details, a list it introduces). Terms the
        heading already holds are left out: the section is about them, the sentence must
        answer the rest ("Which payment methods do you accept online?" under "Accepted
        payment methods" looks for "online"). When the heading holds them all, the
        section's opening answers, as an FAQ's answer starts at the top. Lexical on
        purpose: embedding every sentence with a transformer would cost more than the turn.
        Opening sentences get a small head start: a passage usually leads with its point.
        In a follow-up the terms it adds count twice: "and on batteries?" after a question
        on frames wants the batteries row of the warranty table, not the frames row.

        When the words decide weakly (no sentence holds most of what is asked: "how long
        is the link good for?" against "It is valid for 60 minutes"), or in a follow-up,
        the sentences' meaning counts too: they are embedded (a few short texts, only for
        such turns) and their similarity to the question as asked is added; not when the
        passage was found by its heading (``by_heading``): the question is the section's
        own, in other words, and the section's opening answers it. Also returns the chosen
        sentence's score."""
        candidates = _units(chunk.text)
        if not candidates:
            return [chunk.text.strip()], 0.0
        heading = frozenset(analyze(title_path(chunk.title, chunk.section)))
        # "How long", "how much": the question's phrasing, not words an answer repeats.
        heading |= frozenset(analyze(" ".join(_HOW_MUCH.findall(retrieval.query))))
        scores = [
            coverage(retrieval.lexical, retrieval.query, s, heading)
            + (coverage(retrieval.lexical, retrieval.asked, s, heading) if retrieval.asked else 0.0)
            + LEAD_BONUS / (i + 1)
            for i, s in enumerate(candidates)
        ]
        wanted = _answer_kind(retrieval.asked or retrieval.query)
        if wanted is not None:
            # "How long ...?" is answered by a sentence with a duration in it.
            scores = [
                x + KIND_BONUS * bool(wanted.search(s))
                for x, s in zip(scores, candidates, strict=True)
            ]
        lexical = scores
        weighs_meaning = (
            not by_heading
            and not chunk.rows  # a table's rows were matched by their own vectors
            and len(candidates) <= MAX_MEANING_UNITS
        )
        if weighs_meaning and (retrieval.asked or max(scores) < self._policy.weak_words):
            meaning = self._meaning(retrieval, candidates)
            scores = [
                x + self._policy.meaning_weight * m for x, m in zip(scores, meaning, strict=True)
            ]
        said = [_repeats(s, repeated) for s in candidates]
        if repeated and not all(said):
            # Said in the last reply: the follow-up wants what comes next.
            scores = [-1.0 if r else x for r, x in zip(said, scores, strict=True)]
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
            if said[i] and repeated:
                break  # what the last reply said is not said again
            if items or _introduces_list(candidates[keep[-1]]):
                if not LIST_MARKER.match(candidates[i]) or items >= MAX_LIST_ITEMS:
                    break
                items += 1
            elif len(keep) >= self._policy.max_sentences or lexical[i] < 0.5 * lexical[top]:
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
        return [candidates[i] for i in sorted(set(keep))], scores[top]

    def _meaning(self, retrieval: Retrieval, texts: Sequence[str]) -> list[float]:
        """How close each text is in meaning to the question as asked (to the last message
        in a follow-up, whose condensed query is mostly the earlier question)."""
        if retrieval.asked:
            asked, *vectors = self._retriever.embed([retrieval.asked, *texts])
        else:
            asked, vectors = retrieval.query_vector, self._retriever.embed(list(texts))
        return [max(0.0, cosine(asked, v)) for v in vectors]


def _by_heading(candidate: Candidate) -> bool:
    """The passage was found by its heading (an FAQ's question, a page's title)."""
    heading = candidate.heading or 0.0
    return heading > max(candidate.cosine or 0.0, candidate.row or 0.0)


def _said_sentences(said: str | None) -> frozenset[str]:
    """The sentences of the copilot's last reply (without its sources and list markers)."""
    if not said:
        return frozenset()
    body = said.split("\n\nSources:")[0]
    body = re.sub(r"\s*\[\d+\]", "", body)
    return frozenset(_bare(s) for s in sentences(body) if len(s) > 2)


def _bare(sentence: str) -> str:
    return LIST_MARKER.sub("", sentence, count=1)


def _repeats(unit: str, said: frozenset[str]) -> bool:
    return bool(said) and all(_bare(s) in said for s in sentences(unit))


# A sentence that opens with one of these goes on about the one before it: "Click the link.
# It is valid for 60 minutes." is one answer to "how long is the link good for?".
_GOES_ON = re.compile(r"^(?:It|Its|It's|This|That|These|Those|They|Their|Them)\b")


def _units(text: str) -> list[str]:
    """The sentences a passage is answered from, a sentence that goes on about the one
    before it kept with it."""
    units: list[str] = []
    for s in sentences(text):
        if len(s) <= 2:
            continue
        if units and _GOES_ON.match(s) and not _introduces_list(units[-1]):
            units[-1] = f"{units[-1]} {s}"
        else:
            units.append(s)
    return units


KIND_BONUS = 0.3
MAX_MEANING_UNITS = 12  # sentences embedded at most at query time (about 2 ms each)
FOLLOW_UP_PASSAGES = 3
_DURATION = r"\b\d+(?:[.,]\d+)?\s*(?:-|–|to)?\s*\d*\s*\**\s*(?:business\s+|working\s+)?(?:second|minute|hour|day|week|month|year)s?\b"
_KINDS = {
    "long": re.compile(_DURATION, re.IGNORECASE),
    "soon": re.compile(_DURATION, re.IGNORECASE),
    "often": re.compile(
        _DURATION + r"|\b(?:every|daily|weekly|monthly|yearly|once|twice)\b", re.IGNORECASE
    ),
    "much": re.compile(
        r"[$£€]\s*\d|\b\d+(?:[.,]\d+)?\s*(?:%|percent|dollars?|pounds?|euros?|usd|gbp|eur)\b|\bfree\b",
        re.IGNORECASE,
    ),
    "many": re.compile(
        r"\b\d+\b|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|twelve)\b", re.IGNORECASE
    ),
    "far": re.compile(
        r"\b\d+(?:[.,]\d+)?\s*(?:km|kilomet(?:er|re)s?|miles?|m|met(?:er|re)s?|feet|ft)\b",
        re.IGNORECASE,
    ),
    "old": re.compile(r"\b\d+\s*(?:years?|months?)\b|\bage\b", re.IGNORECASE),
}


def _answer_kind(question: str) -> re.Pattern[str] | None:
    """What a "how long / how much / how many ..." question's answer must hold."""
    asked = _HOW_MUCH.search(question)
    return _KINDS.get(asked.group(1).lower()) if asked else None


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
