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
import json
import statistics
import sys
import time
from pathlib import Path

from copilot.admin.models import CopilotSpec
from copilot.config import Settings
from copilot.conversation.models import Message
from copilot.ingest.service import ObjectEvent
from copilot.knowledge.answer import (
    THRESHOLDS,
    AnswerPolicy,
    confidence,
    gate_confidence,
    unknown_names,
)
from copilot_dev.fakes import MemoryBlobStore, in_memory_container


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pack", type=Path)
    parser.add_argument("--no-history", action="store_true", help="ignore earlier turns")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    blobs = MemoryBlobStore()
    container = in_memory_container(Settings(bucket="calibrate"), blobs=blobs)
    copilot = container.admin.create(CopilotSpec(name="calibrate"))
    cid = copilot.copilot_id
    started = time.perf_counter()
    files = sorted((args.pack / "docs").glob("*"))
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

    answerer = container.answerer
    policy = AnswerPolicy()
    rows = []
    started = time.perf_counter()
    for line in (args.pack / "questions.jsonl").read_text().splitlines():
        q = json.loads(line)
        history = [
            Message(seq=i + 1, role="customer", text=h["text"])
            for i, h in enumerate(q.get("history") or [])
            if h["role"] == "user" and not args.no_history
        ]
        retrieval = answerer.search(cid, q["question"], lambda h=history: h)
        supported = retrieval.candidates[:5]
        best = max(supported, key=lambda c: confidence(c, policy)) if supported else None
        gold = set(q.get("gold_files") or [])
        cited = []
        for c in retrieval.candidates:
            if c.chunk.doc_key not in cited:
                cited.append(c.chunk.doc_key)
        rows.append(
            {
                "id": q["id"],
                "answerable": q.get("answerable"),
                "confidence": gate_confidence(q["question"], retrieval, policy),
                "unknown_names": unknown_names(q["question"], retrieval),
                "best_is_gold": bool(best and best.chunk.doc_key in gold),
                "hit1": bool(cited[:1] and cited[0] in gold),
                "hit5": bool(gold & set(cited[:5])),
                "condensed": retrieval.query != q["question"],  # answered from the condensed query
                "gold": sorted(gold),
                "candidates": [
                    {
                        "doc": c.chunk.doc_key.split("/", 1)[-1],
                        "cosine": round(c.cosine or 0.0, 4),
                        "heading": round(c.heading or 0.0, 4),
                        "coverage": round(c.coverage, 4),
                        "bm25": round(c.bm25 or 0.0, 3),
                        "fused": round(c.fused, 5),
                    }
                    for c in retrieval.candidates[:20]
                ],
            }
        )
    took = time.perf_counter() - started
    answerable = [r for r in rows if r["answerable"] is True]
    unanswerable = [r for r in rows if r["answerable"] is False]
    report: dict[str, object] = {
        "pack": args.pack.name,
        "questions": len(rows),
        "retrieval_ms_mean": round(1000 * took / max(1, len(rows)), 2),
        "recall@1": round(statistics.mean(r["hit1"] for r in answerable), 3),
        "recall@5": round(statistics.mean(r["hit5"] for r in answerable), 3),
        "condensed": sum(r["condensed"] for r in rows),
    }
    sweep = []
    for bar in [x / 100 for x in range(30, 71, 2)]:
        answered = [r for r in answerable if r["confidence"] >= bar]
        sweep.append(
            {
                "threshold": bar,
                "answered_answerable": round(len(answered) / max(1, len(answerable)), 3),
                "answered_with_gold": round(
                    sum(r["best_is_gold"] or r["hit5"] for r in answered) / max(1, len(answerable)),
                    3,
                ),
                "no_match_unanswerable": round(
                    sum(r["confidence"] < bar for r in unanswerable) / max(1, len(unanswerable)), 3
                )
                if unanswerable
                else None,
            }
        )
    report["sweep"] = sweep
    report["current_thresholds"] = THRESHOLDS
    print(json.dumps({k: v for k, v in report.items() if k != "sweep"}, indent=1))
    print("threshold  answered  answered+gold  no-match(unanswerable)")
    for s in sweep:
        print(
            f"  {s['threshold']:.2f}      {s['answered_answerable']:.3f}     {s['answered_with_gold']:.3f}          {s['no_match_unanswerable']}"
        )
    if args.json:
        args.json.write_text(json.dumps({**report, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
