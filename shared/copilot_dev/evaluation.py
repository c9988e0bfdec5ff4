"""Evaluation harness: replay an evaluation pack against a running chat API and score it.

A pack is a folder with ``docs/`` (the knowledge files, uploaded exactly like a customer's) and
``questions.jsonl``, one JSON object per line::

    {"id", "question", "history": [{"role": "user"|"agent", "text"}...], "gold_doc_ids",
     "gold_files", "answer", "answerable": true | false | null}

For each run the harness creates a FRESH copilot, uploads ``docs/`` through the real pipeline
(bucket -> SQS -> ingest), waits until every file is indexed or failed, then replays every
question in a NEW conversation: the history's user turns first (agent turns are the reference
answers and are not sent), then the question. It scores the copilot's replies to that last
message (the messages after the customer's last message in the turn response).

Definitions (also written into the JSON report under ``definitions``):

- cited files: the ``source`` of every citation of those replies, in order (replies in order,
  citations in list order), reduced to the file's base name, duplicates dropped.
- hit@1: the first cited file is a gold file (= the first citation of the first reply that
  has citations). hit@5: any of the first five cited files is a gold file. Gold files are
  compared by base name. Recall@k is the mean over questions that have gold files; a question
  whose conversation failed counts as a miss.
- outcome of a question, exactly one of:
  ``error`` (an HTTP request of its conversation failed);
  ``no_match`` (no reply has a citation and a reply is the copilot's no-match reply: its text
  equals the copilot's configured ``messages.no_match`` or its topic is "No match"; or there
  was no reply at all); ``answered`` (a reply has at least one citation and no reply is the
  no-match reply); ``other`` (anything else: a topic response, the multiple-topics list, the
  escalate link asked for by the customer, ...).
- answered with gold: answered and hit@5.
- answered with a WRONG document: answered, the question has gold files, and none of the
  cited files is gold: the confident wrong answer, the failure that costs trust. (On an
  unanswerable question every answer is wrong: that is ``answered_rate_unanswerable``.)
- latency: client-side wall time of the HTTP call that sends the final question
  (``POST /conversations/{id}/messages``), in milliseconds, after one unmeasured warm-up turn
  (cold starts); percentiles by linear interpolation.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, get_args

import requests

from copilot.admin.models import Copilot, Strictness
from copilot.conversation.models import Message
from copilot.knowledge.calibration import (
    DEFAULT_DECLINE,
    MAX_BATCH,
    LabelledQuestion,
    Measured,
    choose,
)
from copilot_dev.client import ApiError, CopilotClient
from copilot_dev.demo import knowledge_files, upload_files, wait_indexed
from copilot_dev.progress import progress_bars, status

STRICTNESS_LEVELS: tuple[str, ...] = get_args(Strictness)

if TYPE_CHECKING:
    from rich.console import Console

NO_MATCH_TOPIC = (
    "No match"  # copilot.conversation.dialog.NO_MATCH; not imported to keep the harness light
)
REPLY_CHARS = 300
BUCKETS: tuple[tuple[str, bool | None], ...] = (
    ("answerable", True),
    ("unanswerable", False),
    ("underspecified", None),
)
OUTCOMES = ("answered", "no_match", "other", "error")

DEFINITIONS = {
    "cited_files": "base names of the citations' source of the replies to the final question, "
    "in order, duplicates dropped",
    "hit@1": "the first cited file (first citation of the first reply with citations) is gold",
    "hit@5": "any of the first 5 cited files is gold",
    "recall@k": "mean hit@k over the questions that have gold files (errors count as misses)",
    "answered": "a reply has >= 1 citation and no reply is the no-match reply",
    "no_match": "no reply has a citation, and a reply's text equals the copilot's "
    "messages.no_match (or its topic is 'No match'), or there is no reply",
    "other": "neither answered nor no_match (topic response, multiple-topics list, ...)",
    "error": "an HTTP request of the question's conversation failed",
    "answered_with_gold": "answered and hit@5",
    "answered_wrong_doc": "answered, the question has gold files, and no cited file is gold "
    "(a confident wrong answer)",
    "latency": "client-side wall time of the HTTP turn that sends the final question "
    "(after one unmeasured warm-up turn; percentiles by linear interpolation)",
}


class EvalError(Exception):
    """A problem the user can fix (bad pack, unreachable API, ...): the message says which."""


# --- the pack ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    history: tuple[tuple[str, str], ...]  # (role, text)
    gold_files: tuple[str, ...]
    answerable: bool | None
    answer: str = ""
    gold_doc_ids: tuple[str, ...] = ()
    line: int = 0

    @property
    def user_turns(self) -> list[str]:
        return [text for role, text in self.history if role == "user"]


@dataclass(frozen=True)
class Pack:
    name: str
    root: Path
    docs_dir: Path
    docs: tuple[Path, ...]
    questions: tuple[Question, ...]


def load_pack(path: Path) -> Pack:
    """Read and validate a pack; raises EvalError listing every problem (with line numbers)."""
    root = Path(path)
    if not root.is_dir():
        raise EvalError(f"evaluation pack {root}: not a folder")
    docs_dir = root / "docs"
    qfile = root / "questions.jsonl"
    problems = []
    if not docs_dir.is_dir():
        problems.append(f"{docs_dir}: missing (the pack's knowledge files go in docs/)")
    if not qfile.is_file():
        problems.append(f"{qfile}: missing (one JSON question per line)")
    if problems:
        raise EvalError(f"evaluation pack {root}:\n  " + "\n  ".join(problems))
    docs = tuple(knowledge_files(docs_dir))
    if not docs:
        raise EvalError(f"evaluation pack {root}: docs/ holds no files")
    doc_names = {p.name for p in docs}
    questions: list[Question] = []
    seen: dict[str, int] = {}
    with qfile.open(encoding="utf-8", errors="strict") as f:
        try:
            lines = list(enumerate(f, start=1))
        except UnicodeDecodeError as e:
            raise EvalError(f"{qfile}: not UTF-8 ({e})") from None
    for number, raw in lines:
        if not raw.strip():
            continue
        where = f"{qfile} line {number}"
        try:
            item = json.loads(raw)
        except json.JSONDecodeError as e:
            problems.append(f"{where}: not valid JSON ({e.msg} at column {e.colno})")
            continue
        try:
            q = _question(item, number, doc_names)
        except ValueError as e:
            problems.append(f"{where}: {e}")
            continue
        if q.id in seen:
            problems.append(f"{where}: duplicate id {q.id!r} (first on line {seen[q.id]})")
            continue
        seen[q.id] = number
        questions.append(q)
    if not questions and not problems:
        problems.append(f"{qfile}: no questions")
    if problems:
        shown = problems[:20]
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise EvalError(
            f"evaluation pack {root} is invalid ({len(problems)} problem(s)):\n  "
            + "\n  ".join(shown)
            + more
        )
    return Pack(
        name=root.resolve().name,
        root=root,
        docs_dir=docs_dir,
        docs=docs,
        questions=tuple(questions),
    )


def _question(item: Any, line: int, doc_names: set[str]) -> Question:
    if not isinstance(item, dict):
        raise ValueError(f"expected a JSON object, got {type(item).__name__}")
    missing = [k for k in ("id", "question", "answerable") if k not in item]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    qid, text = item["id"], item["question"]
    if not isinstance(qid, str | int) or isinstance(qid, bool) or not str(qid).strip():
        raise ValueError("'id' must be a non-empty string")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("'question' must be a non-empty string")
    answerable = item["answerable"]
    if answerable is not None and not isinstance(answerable, bool):
        raise ValueError(f"'answerable' must be true, false or null, not {answerable!r}")
    history = item.get("history") or []
    if not isinstance(history, list):
        raise ValueError("'history' must be a list of {role, text}")
    turns = []
    for i, turn in enumerate(history):
        if (
            not isinstance(turn, dict)
            or turn.get("role") not in ("user", "agent")
            or not isinstance(turn.get("text"), str)
        ):
            raise ValueError(
                f"history[{i}] must be {{'role': 'user'|'agent', 'text': string}}, got {turn!r}"
            )
        if turn["role"] == "user" and not turn["text"].strip():
            raise ValueError(f"history[{i}]: empty user turn")
        turns.append((turn["role"], turn["text"]))
    gold = item.get("gold_files") or []
    if not isinstance(gold, list) or not all(isinstance(g, str) and g for g in gold):
        raise ValueError("'gold_files' must be a list of file names")
    absent = [g for g in gold if _basename(g) not in doc_names]
    if absent:
        raise ValueError(f"gold file(s) not in docs/: {', '.join(absent)}")
    ids = item.get("gold_doc_ids") or []
    return Question(
        id=str(qid),
        question=text,
        history=tuple(turns),
        gold_files=tuple(gold),
        answerable=answerable,
        answer=str(item.get("answer") or ""),
        gold_doc_ids=tuple(str(i) for i in ids) if isinstance(ids, list) else (),
        line=line,
    )


def _basename(name: str) -> str:
    return PurePosixPath(name.replace("\\", "/")).name


def select(questions: Sequence[Question], limit: int | None) -> list[Question]:
    """``limit`` questions spread evenly over the pack (deterministic), or all of them."""
    n = len(questions)
    if limit is None or limit >= n:
        return list(questions)
    return [questions[(i * n) // limit] for i in range(limit)]


def load_copilot_settings(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise EvalError(f"copilot settings {path}: {e}") from None
    if not isinstance(data, dict):
        raise EvalError(f"copilot settings {path}: expected a JSON object")
    return data


# --- results ----------------------------------------------------------------------------------


@dataclass
class QuestionResult:
    id: str
    answerable: bool | None
    gold_files: list[str]
    cited_files: list[str]
    hit_at_1: bool
    hit_at_5: bool
    outcome: str  # answered | no_match | other | error
    latency_ms: float | None  # the final question's turn
    turns: int  # customer messages sent (history user turns + the question)
    reply: str  # replies to the final question, truncated
    topics: list[str] = field(default_factory=list)
    turn_latencies_ms: list[float] = field(default_factory=list)
    http_errors: int = 0
    error: str | None = None

    @property
    def answered(self) -> bool:
        return self.outcome == "answered"

    def record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "answerable": self.answerable,
            "gold_files": self.gold_files,
            "cited_files": self.cited_files,
            "hit@1": self.hit_at_1,
            "hit@5": self.hit_at_5,
            "answered": self.answered,
            "outcome": self.outcome,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "turns": self.turns,
            "topics": self.topics,
            "reply": self.reply,
            "error": self.error,
        }


@dataclass
class IngestReport:
    files: int
    indexed: int
    failed: list[dict[str, str | None]]
    not_finished: list[str]
    upload_seconds: float
    seconds: float  # first upload -> every file indexed or failed (client wall time)

    @property
    def docs_per_s(self) -> float:
        return self.files / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "docs_per_s": round(self.docs_per_s, 2)}


@dataclass
class EvalReport:
    pack: str
    pack_dir: str
    settings: dict[str, Any]
    copilot: dict[str, Any]
    questions_in_pack: int
    ingest: IngestReport
    results: list[QuestionResult]
    replay_seconds: float
    started_at: str
    finished_at: str = ""
    calibration: dict[str, Any] | None = None  # what --calibrate measured and chose
    # With several strictness levels: each level's replay (``results`` is the main one's).
    by_strictness: dict[str, list[QuestionResult]] = field(default_factory=dict)
    main_strictness: str | None = None

    def metrics(self) -> dict[str, Any]:
        return summarize(self.results)

    def held_out(self) -> list[QuestionResult]:
        """The questions the calibration did not see (all of them without calibration)."""
        return self.held_out_of(self.results)

    def held_out_of(self, results: Sequence[QuestionResult]) -> list[QuestionResult]:
        seen = set(self.calibration["question_ids"]) if self.calibration else set()
        return [r for r in results if r.id not in seen]

    def as_dict(self) -> dict[str, Any]:
        m = self.metrics()
        return {
            "pack": self.pack,
            "pack_dir": self.pack_dir,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "settings": self.settings,
            "copilot": self.copilot,
            "counts": {
                "questions_in_pack": self.questions_in_pack,
                "replayed": len(self.results),
                **{name: m["by_answerable"][name]["questions"] for name, _ in BUCKETS},
                "errored_questions": m["overall"]["outcomes"]["error"],
                "http_errors": m["http_errors"],
            },
            "ingest": self.ingest.as_dict(),
            "replay": {
                "seconds": round(self.replay_seconds, 2),
                "questions_per_s": round(len(self.results) / self.replay_seconds, 2)
                if self.replay_seconds > 0
                else None,
                "concurrency": self.settings.get("concurrency"),
            },
            "metrics": m,
            "calibration": None
            if self.calibration is None
            else {**self.calibration, "held_out_metrics": summarize(self.held_out())},
            "main_strictness": self.main_strictness,
            "by_strictness": {
                level: {
                    "metrics": summarize(results),
                    "held_out_metrics": summarize(self.held_out_of(results))
                    if self.calibration
                    else None,
                    "questions": [r.record() for r in results],
                }
                for level, results in self.by_strictness.items()
            },
            "definitions": DEFINITIONS,
            "questions": [r.record() for r in self.results],
        }


def _rate(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def percentile(values: Sequence[float], p: float) -> float | None:
    """Linear-interpolation percentile (numpy's default), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(values: Sequence[float]) -> dict[str, float | int | None]:
    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 1)

    return {
        "n": len(values),
        "p50": r(percentile(values, 50)),
        "p95": r(percentile(values, 95)),
        "p99": r(percentile(values, 99)),
        "mean": r(sum(values) / len(values)) if values else None,
        "max": r(max(values)) if values else None,
    }


def _group(results: Sequence[QuestionResult]) -> dict[str, Any]:
    with_gold = [r for r in results if r.gold_files]
    outcomes = {o: sum(r.outcome == o for r in results) for o in OUTCOMES}
    n = len(results)
    return {
        "questions": n,
        "with_gold": len(with_gold),
        "recall@1": _rate(sum(r.hit_at_1 for r in with_gold), len(with_gold)),
        "recall@5": _rate(sum(r.hit_at_5 for r in with_gold), len(with_gold)),
        "answered_rate": _rate(outcomes["answered"], n),
        "answered_with_gold_rate": _rate(sum(r.answered and r.hit_at_5 for r in results), n),
        "answered_wrong_doc_rate": _rate(
            sum(r.answered and bool(r.gold_files) and not r.hit_at_5 for r in results), n
        ),
        "no_match_rate": _rate(outcomes["no_match"], n),
        "other_rate": _rate(outcomes["other"], n),
        "error_rate": _rate(outcomes["error"], n),
        "outcomes": outcomes,
    }


def summarize(results: Sequence[QuestionResult]) -> dict[str, Any]:
    by = {name: _group([r for r in results if r.answerable is value]) for name, value in BUCKETS}
    answerable, unanswerable, under = by["answerable"], by["unanswerable"], by["underspecified"]
    latencies = [r.latency_ms for r in results if r.latency_ms is not None]
    all_turns = [ms for r in results for ms in r.turn_latencies_ms]
    return {
        # The headline figures: retrieval and answering on answerable questions, declining on
        # unanswerable ones, and what the copilot does with underspecified ones.
        "recall@1": answerable["recall@1"],
        "recall@5": answerable["recall@5"],
        "answered_rate_answerable": answerable["answered_rate"],
        "answered_with_gold_rate_answerable": answerable["answered_with_gold_rate"],
        "answered_wrong_doc_rate_answerable": answerable["answered_wrong_doc_rate"],
        "no_match_rate_unanswerable": unanswerable["no_match_rate"],
        "answered_rate_unanswerable": unanswerable["answered_rate"],
        "answered_rate_underspecified": under["answered_rate"],
        "no_match_rate_underspecified": under["no_match_rate"],
        "latency_ms": latency_summary(latencies),
        "latency_ms_all_turns": latency_summary(all_turns),
        "http_errors": sum(r.http_errors for r in results),
        "overall": _group(results),
        "by_answerable": by,
    }


# --- replay -----------------------------------------------------------------------------------


def replies_to_last(messages: Sequence[Message]) -> list[Message]:
    """The copilot's replies after the customer's last message of a turn response."""
    last = max((i for i, m in enumerate(messages) if m.role == "customer"), default=-1)
    return [m for m in messages[last + 1 :] if m.role != "customer"]


def cited_files(replies: Sequence[Message]) -> list[str]:
    files: list[str] = []
    for m in replies:
        for c in m.citations:
            name = _basename(c.source)
            if name not in files:
                files.append(name)
    return files


def classify(replies: Sequence[Message], no_match: str) -> str:
    cited = any(m.citations for m in replies)
    is_no_match = any(
        m.text.strip() == no_match.strip() or m.topic == NO_MATCH_TOPIC for m in replies
    )
    if not replies or (is_no_match and not cited):
        return "no_match"
    if cited and not is_no_match:
        return "answered"
    return "other"


def score(question: Question, replies: Sequence[Message], no_match: str) -> QuestionResult:
    files = cited_files(replies)
    gold = {_basename(g) for g in question.gold_files}
    text = "\n".join(m.text for m in replies)
    return QuestionResult(
        id=question.id,
        answerable=question.answerable,
        gold_files=list(question.gold_files),
        cited_files=files,
        hit_at_1=bool(files) and files[0] in gold,
        hit_at_5=any(f in gold for f in files[:5]),
        outcome=classify(replies, no_match),
        latency_ms=None,
        turns=0,
        reply=text[:REPLY_CHARS],
        topics=[m.topic or "" for m in replies],
    )


def ask(client: CopilotClient, copilot: Copilot, question: Question) -> QuestionResult:
    """One question in a fresh conversation: history user turns, then the question."""
    texts = [*question.user_turns, question.question]
    timings: list[float] = []
    sent = 0
    try:
        started = client.start(copilot.copilot_id)
        turn = None
        for text in texts:
            t0 = time.perf_counter()
            turn = client.send(started.conversation_id, started.token, text)
            timings.append((time.perf_counter() - t0) * 1000)
            sent += 1
        assert turn is not None
    except (ApiError, requests.RequestException, ValueError) as e:
        return QuestionResult(
            id=question.id,
            answerable=question.answerable,
            gold_files=list(question.gold_files),
            cited_files=[],
            hit_at_1=False,
            hit_at_5=False,
            outcome="error",
            latency_ms=None,
            turns=sent,
            reply="",
            turn_latencies_ms=timings,
            http_errors=1,
            error=f"turn {sent + 1}/{len(texts)}: {type(e).__name__}: {e}"[:REPLY_CHARS],
        )
    result = score(question, replies_to_last(turn.messages), copilot.messages.no_match)
    result.latency_ms = timings[-1]
    result.turn_latencies_ms = timings
    result.turns = sent
    return result


def replay(
    client: CopilotClient,
    copilot: Copilot,
    questions: Sequence[Question],
    concurrency: int = 4,
    on_done: Callable[[QuestionResult], None] | None = None,
) -> list[QuestionResult]:
    """Ask every question; conversations run in parallel, turns within one run in order.

    Results come back in the questions' order."""
    local = threading.local()

    def one(question: Question) -> QuestionResult:
        c = getattr(local, "client", None)
        if c is None:  # requests sessions are not thread-safe: one client per thread
            c = local.client = CopilotClient(client.base_url, client.admin_key, client.timeout)
        return ask(c, copilot, question)

    results: dict[str, QuestionResult] = {}
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="eval") as pool:
        futures = {pool.submit(one, q): q for q in questions}
        for future in as_completed(futures):
            result = future.result()
            results[futures[future].id] = result
            if on_done:
                on_done(result)
    return [results[q.id] for q in questions]


def warm_up(client: CopilotClient, copilot: Copilot, questions: Sequence[Question]) -> float | None:
    """One unmeasured knowledge turn first, so cold starts (model loading in the chat function)
    do not land in the first measured turns; returns its latency in ms (None if it failed)."""
    if not questions:
        return None
    try:
        started = client.start(copilot.copilot_id)
        t0 = time.perf_counter()
        client.send(started.conversation_id, started.token, questions[0].question)
    except (ApiError, requests.RequestException, ValueError):
        return None
    return (time.perf_counter() - t0) * 1000


# --- ingest -----------------------------------------------------------------------------------


def ingest(
    client: CopilotClient,
    s3: Any,
    bucket: str,
    copilot_id: str,
    pack: Pack,
    timeout: float = 1800,
    threads: int = 4,
    on_upload: Callable[[str], None] | None = None,
    on_indexed: Callable[[int], None] | None = None,
) -> IngestReport:
    """Upload the pack's docs through the bucket and wait until each is indexed or failed."""
    files = list(pack.docs)
    started = time.perf_counter()
    versions: dict[str, str] = {}
    slices = [files[i :: max(1, threads)] for i in range(max(1, threads))]
    with ThreadPoolExecutor(max_workers=len(slices), thread_name_prefix="upload") as pool:
        for part in pool.map(
            lambda chunk: upload_files(
                s3, bucket, copilot_id, chunk, pack.docs_dir, on_upload=on_upload
            ),
            slices,
        ):
            versions |= part
    uploaded = time.perf_counter()
    poll = 0.2 if len(versions) <= 50 else 1.0
    not_finished: list[str] = []
    try:
        statuses = wait_indexed(
            client, copilot_id, versions, timeout=timeout, poll=poll, on_progress=on_indexed
        )
    except TimeoutError:
        docs = {d.doc_key: d for d in client.documents(copilot_id)}
        statuses = [
            d for k, d in docs.items() if k in versions and d.attempted_version == versions[k]
        ]
        done = {d.doc_key for d in statuses}
        not_finished = sorted(k for k in versions if k not in done)
    seconds = time.perf_counter() - started
    failed = [{"doc_key": d.doc_key, "reason": d.reason} for d in statuses if d.status == "failed"]
    return IngestReport(
        files=len(versions),
        indexed=sum(d.status == "indexed" for d in statuses),
        failed=failed,
        not_finished=not_finished,
        upload_seconds=round(uploaded - started, 2),
        seconds=round(seconds, 2),
    )


# --- a whole run ------------------------------------------------------------------------------


@dataclass
class EvalOptions:
    limit: int | None = None
    concurrency: int = 4
    copilot_settings: dict[str, Any] = field(default_factory=dict)
    index_timeout: float = 1800
    calibrate: bool = False  # calibrate the copilot's answer bar on half the questions first
    decline: float = DEFAULT_DECLINE  # ... to decline this share of the unanswerable ones
    # Replay the questions once at each of these strictness levels (the index is built once);
    # empty: once, at the copilot's own.
    strictness: list[str] = field(default_factory=list)


def create_copilot(client: CopilotClient, pack: Pack, extra: dict[str, Any]) -> Copilot:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    name = f"eval {pack.name[:60]} {stamp}"
    try:
        return client.create_copilot({"name": name, **extra})
    except ApiError as e:
        raise EvalError(f"could not create the evaluation copilot: {e}") from None
    except requests.RequestException as e:
        raise EvalError(f"chat API at {client.base_url} unreachable: {e}") from None


def run_eval(
    client: CopilotClient,
    s3: Any,
    bucket: str,
    pack: Pack,
    options: EvalOptions | None = None,
    console: Console | None = None,
    extra_settings: dict[str, Any] | None = None,
) -> EvalReport:
    """A fresh copilot, the pack's docs ingested, its questions replayed and scored."""
    options = options or EvalOptions()
    if options.concurrency < 1:
        raise EvalError("concurrency must be at least 1")
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    copilot = create_copilot(client, pack, options.copilot_settings)
    questions = select(pack.questions, options.limit)
    with progress_bars(console) as progress:
        uploading = progress.add_task("Uploading", total=len(pack.docs))
        indexing = progress.add_task("Indexing", total=len(pack.docs))
        report = ingest(
            client,
            s3,
            bucket,
            copilot.copilot_id,
            pack,
            timeout=options.index_timeout,
            threads=options.concurrency,
            on_upload=lambda _key: progress.advance(uploading),
            on_indexed=lambda n: progress.update(indexing, completed=n),
        )
        warmup_ms = warm_up(client, copilot, questions)
        calibration = None
        if options.calibrate:
            sample = calibration_sample(questions)
            measuring = progress.add_task("Calibrating", total=len(sample))
            calibration = calibrate(
                client,
                copilot,
                sample,
                options.decline,
                options.concurrency,
                on_done=lambda n: progress.advance(measuring, n),
            )
        levels: list[str | None] = [*options.strictness] or [None]
        by_strictness: dict[str, list[QuestionResult]] = {}
        results: list[QuestionResult] = []
        replay_seconds = 0.0
        main = main_strictness(options.strictness)
        for level in levels:
            if level is not None:
                copilot = set_strictness(client, copilot, level)
            asking = progress.add_task(
                "Replaying" + (f" ({level})" if level else ""), total=len(questions)
            )
            t0 = time.perf_counter()
            replayed = replay(
                client,
                copilot,
                questions,
                concurrency=options.concurrency,
                on_done=partial(_advance, progress, asking),
            )
            took = time.perf_counter() - t0
            if level is None or level == main:
                results, replay_seconds = replayed, took
            if level is not None:
                by_strictness[level] = replayed
        if main is not None and levels[-1] != main:
            copilot = set_strictness(client, copilot, main)  # left as the headline's
    settings = {
        "url": client.base_url,
        "limit": options.limit,
        "concurrency": options.concurrency,
        "copilot_settings": options.copilot_settings,
        "index_timeout": options.index_timeout,
        "code_version": _git_commit(),
        "warmup_turn_ms": None if warmup_ms is None else round(warmup_ms, 1),
        **(extra_settings or {}),
    }
    return EvalReport(
        pack=pack.name,
        pack_dir=str(pack.root.resolve()),
        settings=settings,
        copilot=copilot.model_dump(mode="json"),
        questions_in_pack=len(pack.questions),
        ingest=report,
        results=results,
        replay_seconds=replay_seconds,
        started_at=started_at,
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        calibration=calibration,
        by_strictness=by_strictness,
        main_strictness=main,
    )


def _advance(progress: Any, task: Any, _result: QuestionResult) -> None:
    progress.advance(task)


def main_strictness(levels: Sequence[str]) -> str | None:
    """Of several strictness levels, the one the report's headline figures are for: medium
    (the default) when it is among them, else the first."""
    if not levels:
        return None
    return "medium" if "medium" in levels else levels[0]


def parse_strictness(text: str | None) -> list[str]:
    """``low,medium,high`` (any of them, in any order, each once)."""
    if not text:
        return []
    levels = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in levels if t not in STRICTNESS_LEVELS]
    if unknown or len(set(levels)) != len(levels) or not levels:
        raise EvalError(
            f"--strictness takes a comma-separated list of {', '.join(STRICTNESS_LEVELS)} "
            f"(each once), not {text!r}"
        )
    return levels


def set_strictness(client: CopilotClient, copilot: Copilot, level: str) -> Copilot:
    try:
        return client.update_copilot(copilot.copilot_id, {"strictness": level})
    except ApiError as e:
        raise EvalError(f"could not set the copilot's strictness to {level}: {e}") from None


def calibration_sample(questions: Sequence[Question]) -> list[Question]:
    """Half the questions, chosen by a hash of their id (the same half on every run): the
    bar is chosen on them and the other half shows how it does on questions it never saw."""
    return [q for q in questions if hashlib.sha256(q.id.encode()).digest()[0] % 2 == 0]


def calibrate(
    client: CopilotClient,
    copilot: Copilot,
    questions: Sequence[Question],
    decline: float = DEFAULT_DECLINE,
    concurrency: int = 4,
    on_done: Callable[[int], None] = lambda _n: None,
) -> dict[str, Any]:
    """Measure ``questions`` through the copilot's calibration route, then set its
    ``answer_bar`` to the lowest bar that declines ``decline`` of the unanswerable ones, with
    the ``answer_margin_weight`` that answers most there (``calibration.choose``)."""
    labelled = [
        LabelledQuestion(
            question=q.question[:2000],
            history=[t[:2000] for t in q.user_turns[-20:]],
            answerable=q.answerable,
            gold_files=list(q.gold_files[:20]),
        )
        for q in questions
    ]
    batches = [labelled[i : i + MAX_BATCH] for i in range(0, len(labelled), MAX_BATCH)]

    def one(batch: list[LabelledQuestion]) -> list[Measured]:
        measured = client.calibration(copilot.copilot_id, batch).measured
        on_done(len(batch))
        return measured

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        measured = [m for part in pool.map(one, batches) for m in part]
    chosen, rows = choose(labelled, measured, decline)
    if chosen is not None:
        client.update_copilot(
            copilot.copilot_id,
            {"answer_bar": chosen.bar, "answer_margin_weight": chosen.margin_weight},
        )
    return {
        "questions": len(labelled),
        "question_ids": [q.id for q in questions],
        "unanswerable": sum(q.answerable is False for q in labelled),
        "decline_target": decline,
        "answer_bar": None if chosen is None else chosen.bar,
        "answer_margin_weight": None if chosen is None else chosen.margin_weight,
        "at_answer_bar": None if chosen is None else chosen.model_dump(),
        "sweep": [r.model_dump() for r in rows],
    }


def run_local(
    pack: Pack,
    options: EvalOptions | None = None,
    root: Path | None = None,
    console: Console | None = None,
) -> EvalReport:
    """Start a private local stack (free ports, temp dir), evaluate against it, stop it."""
    from copilot_dev.localstack import LocalStack, StackConfig

    root = root or repo_root()
    with tempfile.TemporaryDirectory(prefix="copilot-eval-") as tmp:
        config = StackConfig.with_free_ports(root, Path(tmp))
        stack = LocalStack(config)
        t0 = time.perf_counter()
        with status(console, "Starting a private local stack..."):
            try:
                stack.start()
            except (RuntimeError, TimeoutError, OSError) as e:
                raise EvalError(f"the local stack did not start: {e}") from None
        try:
            if console is not None:
                console.print(f"Local stack up in {time.perf_counter() - t0:.1f} s")
            client = CopilotClient(config.function_url("chat"), admin_key=config.admin_api_key)
            extra = {
                "local": True,
                "embedder": os.environ.get("COPILOT_EMBEDDER", "default"),
            }
            return run_eval(
                client,
                stack.client("s3"),
                config.bucket,
                pack,
                options,
                console=console,
                extra_settings=extra,
            )
        finally:
            with status(console, "Stopping the local stack..."):
                stack.stop()


def repo_root() -> Path:
    """The repository (holds functions/): the working directory's, else this package's."""
    here = Path.cwd()
    package = Path(__file__).resolve().parents[2]
    for candidate in [here, *here.parents, package]:
        if (candidate / "functions" / "chat" / "main.py").exists():
            return candidate
    raise EvalError("--local needs the copilot repository (no functions/ folder found)")


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


# --- output -----------------------------------------------------------------------------------


def write_json(report: EvalReport, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.as_dict(), indent=2, ensure_ascii=False) + "\n")


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _ms(value: float | int | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def print_report(report: EvalReport, console: Console) -> None:
    from rich.table import Table

    m = report.metrics()
    ing = report.ingest
    console.print(
        f"[bold]{report.pack}[/bold]: copilot {report.copilot.get('copilot_id')} — "
        f"{ing.indexed}/{ing.files} docs indexed in {ing.seconds:.1f} s "
        f"({ing.docs_per_s:.1f} docs/s; upload {ing.upload_seconds:.1f} s), "
        f"{len(report.results)}/{report.questions_in_pack} questions replayed in "
        f"{report.replay_seconds:.1f} s",
        highlight=False,
    )
    if ing.failed:
        console.print(f"[red]{len(ing.failed)} file(s) failed to index:[/red]")
        for f in ing.failed[:20]:
            console.print(f"  {f['doc_key']}: {f['reason']}", highlight=False)
    if ing.not_finished:
        console.print(
            f"[red]{len(ing.not_finished)} file(s) not finished indexing in time:[/red] "
            + ", ".join(ing.not_finished[:10]),
            highlight=False,
        )
    groups = {"all": m["overall"], **m["by_answerable"]}
    table = Table(title=f"Evaluation: {report.pack}")
    table.add_column("metric")
    for name in groups:
        table.add_column(name, justify="right")
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("questions", lambda g: str(g["questions"])),
        ("with gold files", lambda g: str(g["with_gold"])),
        ("Recall@1", lambda g: _pct(g["recall@1"])),
        ("Recall@5", lambda g: _pct(g["recall@5"])),
        ("answered", lambda g: _pct(g["answered_rate"])),
        ("answered, gold cited", lambda g: _pct(g["answered_with_gold_rate"])),
        ("answered, WRONG doc", lambda g: _pct(g["answered_wrong_doc_rate"])),
        ("no match", lambda g: _pct(g["no_match_rate"])),
        ("other reply", lambda g: _pct(g["other_rate"])),
        ("errors", lambda g: str(g["outcomes"]["error"])),
    ]
    for label, cell in rows:
        table.add_row(label, *(cell(g) for g in groups.values()))
    console.print(table)
    lat, every = m["latency_ms"], m["latency_ms_all_turns"]
    timing = Table(title="Turn latency (ms, client-side)")
    for col in ("turns", "n", "p50", "p95", "p99", "mean", "max"):
        timing.add_column(col, justify="right" if col != "turns" else "left")
    for label, s in (("final question", lat), ("every turn", every)):
        timing.add_row(
            label, str(s["n"]), *(_ms(s[k]) for k in ("p50", "p95", "p99", "mean", "max"))
        )
    console.print(timing)
    if report.calibration is not None:
        print_calibration(report, console)
    if report.by_strictness:
        print_strictness(report, console)
    if m["http_errors"]:
        console.print(f"[red]{m['http_errors']} HTTP error(s)[/red]; first ones:")
        for r in [r for r in report.results if r.error][:5]:
            console.print(f"  {r.id}: {r.error}", highlight=False)


def print_calibration(report: EvalReport, console: Console) -> None:
    """What the calibration chose, and the figures on the questions it did not see."""
    c = report.calibration
    assert c is not None
    if c["answer_bar"] is None:
        console.print(
            f"[yellow]Calibration on {c['questions']} questions ({c['unanswerable']} "
            f"unanswerable): no bar declines {_pct(c['decline_target'])} of the unanswerable "
            "ones; the copilot keeps its default bar.[/yellow]",
            highlight=False,
        )
        return
    at = c["at_answer_bar"]
    held = summarize(report.held_out())
    console.print(
        f"Calibrated on {c['questions']} questions (half the pack, by id; "
        f"{c['unanswerable']} unanswerable): answer_bar {c['answer_bar']:.2f} (margin "
        f"weight {c.get('answer_margin_weight') or 0:.2f}) declines "
        f"{_pct(at['declined_unanswerable'])} of them there (target "
        f"{_pct(c['decline_target'])}), answers {_pct(at['answered_with_gold'])} with gold, "
        f"{_pct(at['answered_wrong_doc'])} with a WRONG doc.\n"
        f"On the {len(report.held_out())} held-out questions: answered with gold "
        f"{_pct(held['answered_with_gold_rate_answerable'])}, WRONG doc "
        f"{_pct(held['answered_wrong_doc_rate_answerable'])}, unanswerable declined "
        f"{_pct(held['no_match_rate_unanswerable'])}.",
        highlight=False,
    )


def print_strictness(report: EvalReport, console: Console) -> None:
    """The same questions at each strictness level: what a team trades by choosing one."""
    from rich.table import Table

    title = "By strictness (answerable / unanswerable questions)"
    table = Table(title=title + (", held out of the calibration" if report.calibration else ""))
    for col in ("strictness", "answered, gold cited", "answered, WRONG doc", "declined"):
        table.add_column(col, justify="left" if col == "strictness" else "right")
    for level, results in report.by_strictness.items():
        m = summarize(report.held_out_of(results))
        table.add_row(
            level + (" (headline)" if level == report.main_strictness else ""),
            _pct(m["answered_with_gold_rate_answerable"]),
            _pct(m["answered_wrong_doc_rate_answerable"]),
            _pct(m["no_match_rate_unanswerable"]),
        )
    console.print(table)
