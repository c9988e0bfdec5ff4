"""Retrieval and answer-confidence calibration on an eval pack, in-process (no HTTP).

    .venv/bin/python bench/calibrate.py ../shared/eval/stackfaq [--history] [--json out.json]

Indexes the pack's docs with the real ingest service (parsers, chunking, the default embedder,
the BM25 snapshot) on in-memory adapters, then for every question computes the hybrid
retrieval and the answer gate's confidence, and reports: Recall@1/@5 of the gold file among the
cited candidates, and for each strictness threshold the answered rate on answerable questions
vs the no-match rate on unanswerable ones. This is the tool for choosing the thresholds in
copilot/knowledge.py; the end-to-end figures come from `copilot eval` over HTTP.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import pickle
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from copilot.admin.models import Copilot, CopilotSpec
from copilot.bootstrap import Container
from copilot.config import ProviderSettings, Settings, embedding_model_id
from copilot.conversation.models import Message
from copilot.ingest.service import ObjectEvent
from copilot.knowledge.answer import (
    THRESHOLDS,
    AnswerPolicy,
    confidence,
    doc_margin,
    gate_confidence,
    supported_at,
    unknown_names,
)
from copilot_dev.fakes import MemoryBlobStore, in_memory_container

BARS = [x / 100 for x in range(30, 71, 2)]
STORES = ("copilots", "documents", "index", "lexical_store", "blobs")
ROOT = Path(__file__).resolve().parent.parent


def _fingerprint(pack: Path) -> str:
    """What the index depends on: the pack's files and the code that reads and embeds them."""
    digest = hashlib.sha256(embedding_model_id(ProviderSettings()).encode())
    code = [
        *sorted((ROOT / "shared/copilot/ingest").rglob("*.py")),
        ROOT / "shared/copilot/knowledge/models.py",
        ROOT / "shared/copilot/knowledge/vectors.py",
        ROOT / "shared/copilot/knowledge/lexical.py",
        ROOT / "shared/copilot/bootstrap.py",
    ]
    for path in [*code, *sorted((pack / "docs").glob("*")), pack / "questions.jsonl"]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def indexed(pack: Path, cache: Path | None) -> tuple[Container, Copilot]:
    """The pack indexed with the real ingest service on in-memory stores (or its cached copy)."""
    saved = cache / f"{pack.name}-{_fingerprint(pack)}.pickle" if cache else None
    if saved is not None and saved.exists():
        stores = {}
        for name, (kind, state) in pickle.loads(saved.read_bytes()).items():
            store = stores[name] = kind()  # the in-memory stores take no arguments
            store.__dict__.update(state)
        container = in_memory_container(Settings(bucket="calibrate"), **stores)
        (copilot,) = container.admin.list()
        print(f"indexed pack read from {saved}", file=sys.stderr)
        return container, copilot
    blobs = MemoryBlobStore()
    container = in_memory_container(Settings(bucket="calibrate"), blobs=blobs)
    copilot = container.admin.create(CopilotSpec(name="calibrate"))
    cid = copilot.copilot_id
    started = time.perf_counter()
    files = sorted((pack / "docs").glob("*"))
    for path in files:
        blobs.put(f"{cid}/{path.name}", path.read_bytes())
    # Index without a rebuild per file; one lexical rebuild at the end (as the delayed
    # rebuild message coalesces a bulk upload).
    ingest = container.ingest
    ingest._lexical = None
    for path in files:
        ingest.handle(ObjectEvent(bucket="calibrate", key=f"{cid}/{path.name}", created=True))
    container.lexical.rebuild(cid)
    print(f"indexed {len(files)} files in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    if saved is not None:
        saved.parent.mkdir(parents=True, exist_ok=True)
        kept = {}
        for name in STORES:
            store = getattr(container, name)
            # Their contents, not their locks: a fresh store gets new ones.
            state = {k: v for k, v in vars(store).items() if not hasattr(v, "acquire")}
            kept[name] = (type(store), state)
        saved.write_bytes(pickle.dumps(kept))
    return container, copilot


def _customer_lines(messages: list[dict[str, str]]) -> tuple[list[str], str]:
    """The earlier customer messages and the last one, from the condense prompt."""
    text = messages[-1]["content"]
    head, _, last = text.rpartition("Customer (last message): ")
    earlier = [
        line[len("Customer: ") :] for line in head.splitlines() if line.startswith("Customer: ")
    ]
    return earlier, last.strip()


def _previous(messages: list[dict[str, str]]) -> str:
    earlier, last = _customer_lines(messages)
    return earlier[-1] if earlier else last


def _joined(messages: list[dict[str, str]]) -> str:
    earlier, last = _customer_lines(messages)
    return f"{earlier[-1]} {last}" if earlier else last


REWRITES = {"previous": _previous, "joined": _joined}


def scripted_condenser(answerer: Any, rewrite: Any) -> Any:
    """The answerer's condenser becomes the product's LlmCondenser on langchain-openai,
    talking to the OpenAI API emulator on loopback, whose scripted model rewrites as told."""
    from copilot.adapters.providers.factory import build_chat_model
    from copilot.config import Settings as Full
    from copilot.knowledge.generation import LlmCondenser
    from copilot_dev.emulators.openai_api import OpenAiEmulator

    emulator = OpenAiEmulator(chat_models=None).start()
    emulator.responder = lambda system, messages: rewrite(messages)
    model = build_chat_model(
        Full(llm="openai", openai_base_url=emulator.base_url, openai_api_key=emulator.api_key)
    )
    answerer._condense = LlmCondenser(model)
    return emulator


def _value(text: str) -> float | int | bool | str:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return float(text) if "." in text else int(text)
    except ValueError:
        return text  # a word (a mode's name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pack", type=Path)
    parser.add_argument("--no-history", action="store_true", help="ignore earlier turns")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--cache",
        type=Path,
        help="keep the indexed pack in this folder and reuse it while the ingest code and "
        "the pack are unchanged (experiments on the answer side only)",
    )
    parser.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="an AnswerPolicy field to try (coverage_weight=0, pick_from=20...)",
    )
    parser.add_argument(
        "--llm-rewrite",
        choices=sorted(REWRITES),
        help="condense follow-ups with an LLM: the OpenAI API emulator's scripted model, "
        "through the product's LlmCondenser and langchain-openai, rewriting as named "
        "(previous: the earlier question restated, the ask lost; joined: the earlier question "
        "and the message, every turn)",
    )
    args = parser.parse_args()

    container, copilot = indexed(args.pack, args.cache)
    cid = copilot.copilot_id

    answerer = container.answerer
    tried: dict[str, Any] = {k: _value(v) for k, v in (p.split("=", 1) for p in args.policy)}
    policy = dataclasses.replace(AnswerPolicy(), **tried)
    answerer._policy = policy  # the replayed turns and the gate use it too
    emulator = None
    if args.llm_rewrite:
        emulator = scripted_condenser(answerer, REWRITES[args.llm_rewrite])
    subjects_index = answerer.subjects(cid)
    rows = []
    started = time.perf_counter()
    for line in (args.pack / "questions.jsonl").read_text().splitlines():
        q = json.loads(line)
        history: list[Message] = []
        subjects: list[str] = []
        # The earlier turns are replayed as the chat does (each one answered, at the medium
        # bar), so the conversation carries what they were about to the question.
        for h in q.get("history") or []:
            if h["role"] != "user" or args.no_history:
                continue
            replayed = answerer.consult(
                copilot, h["text"], lambda h=list(history): h, subjects, ask_which=False
            )
            subjects = replayed.subjects
            history.append(Message(seq=len(history) + 1, role="customer", text=h["text"]))
        scope, in_effect = answerer.scope(cid, q["question"], subjects)
        # As a turn searches: with the copilot's bar (an unsupported question is searched
        # with the previous one too) and margin weight.
        retrieval = answerer.search(
            cid,
            q["question"],
            lambda h=history: h,
            scope,
            policy.bar(copilot),
            policy.margin_weight_for(copilot),
        )
        supported = retrieval.candidates[: policy.pick_from]
        best = max(supported, key=lambda c: confidence(c, policy)) if supported else None
        gold = set(q.get("gold_files") or [])
        gold_subjects = {s.key for g in gold for s in subjects_index.of_doc(g)}
        cited = []
        for c in retrieval.candidates:
            if c.chunk.doc_key not in cited:
                cited.append(c.chunk.doc_key)
        # What the reply would cite at each bar (best first): gold among them, or not.
        at_bar = {
            f"{bar:.2f}": [
                c.chunk.doc_key for c in supported_at(bar, retrieval, q["question"], policy)
            ]
            for bar in BARS
        }
        rows.append(
            {
                "id": q["id"],
                "answerable": q.get("answerable"),
                "confidence": gate_confidence(q["question"], retrieval, policy),
                "margin": round(doc_margin(retrieval, policy), 4),
                "unknown_names": unknown_names(q["question"], retrieval),
                "best_is_gold": bool(best and best.chunk.doc_key in gold),
                "hit1": bool(cited[:1] and cited[0] in gold),
                "hit5": bool(gold & set(cited[:5])),
                "cited_gold": {b: bool(gold & set(d)) for b, d in at_bar.items()},
                "answered": {b: bool(d) for b, d in at_bar.items()},
                # the best cited document is about another subject than the gold's (another
                # hotel's wifi entry): the wrong-place answer
                "best_other_subject": bool(
                    best
                    and gold_subjects
                    and not gold_subjects
                    & {s.key for s in subjects_index.of_doc(best.chunk.doc_key)}
                ),
                "subjects": [s.key for s in in_effect],
                "would_ask_which": bool(
                    scope is None and answerer._which(copilot, retrieval, subjects_index)
                ),
                "condensed": retrieval.query != q["question"],  # answered from the condensed query
                "gold": sorted(gold),
                "candidates": [
                    {
                        "doc": c.chunk.doc_key.split("/", 1)[-1],
                        "cosine": round(c.cosine or 0.0, 4),
                        "heading": round(c.heading or 0.0, 4),
                        "row": round(c.row or 0.0, 4),
                        "coverage": round(c.coverage, 4),
                        "bm25": round(c.bm25 or 0.0, 3),
                        "fused": round(c.fused, 5),
                    }
                    for c in retrieval.candidates[:20]
                ],
            }
        )
    took = time.perf_counter() - started
    if emulator is not None:
        rewrites = [c for c in emulator.chats if c.system.startswith("Rewrite")]
        print(f"{len(rewrites)} rewrites asked of the scripted model", file=sys.stderr)
        emulator.stop()
    answerable = [r for r in rows if r["answerable"] is True]
    unanswerable = [r for r in rows if r["answerable"] is False]
    report: dict[str, object] = {
        "pack": args.pack.name,
        "questions": len(rows),
        "retrieval_ms_mean": round(1000 * took / max(1, len(rows)), 2),
        "recall@1": round(statistics.mean(r["hit1"] for r in answerable), 3),
        "recall@5": round(statistics.mean(r["hit5"] for r in answerable), 3),
        "condensed": sum(r["condensed"] for r in rows),
        "with_subject": sum(bool(r["subjects"]) for r in rows),
        "would_ask_which": sum(r["would_ask_which"] for r in rows),
        "subjects_known": len(subjects_index.subjects),
        "policy": dataclasses.asdict(policy),
    }
    sweep = []
    n = max(1, len(answerable))
    for bar in BARS:
        b = f"{bar:.2f}"
        answered = [r for r in answerable if r["answered"][b]]
        sweep.append(
            {
                "threshold": bar,
                "answered_answerable": round(len(answered) / n, 3),
                "answered_with_gold": round(sum(r["cited_gold"][b] for r in answered) / n, 3),
                # answered, and no cited document is the gold one: the confident wrong answer
                "answered_wrong_doc": round(sum(not r["cited_gold"][b] for r in answered) / n, 3),
                "answered_other_subject": round(
                    sum(r["best_other_subject"] for r in answered) / n, 3
                ),
                "no_match_unanswerable": round(
                    sum(not r["answered"][b] for r in unanswerable) / max(1, len(unanswerable)), 3
                )
                if unanswerable
                else None,
            }
        )
    report["sweep"] = sweep
    report["current_thresholds"] = THRESHOLDS
    print(json.dumps({k: v for k, v in report.items() if k != "sweep"}, indent=1))
    print("bar   answered  with-gold  WRONG-doc  other-subject  no-match(unanswerable)")
    for s in sweep:
        print(
            f"{s['threshold']:.2f}  {s['answered_answerable']:.3f}     {s['answered_with_gold']:.3f}"
            f"      {s['answered_wrong_doc']:.3f}      {s['answered_other_subject']:.3f}"
            f"          {s['no_match_unanswerable']}"
        )
    if args.json:
        args.json.write_text(json.dumps({**report, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
