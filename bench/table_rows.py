"""What a vector per table row costs at ingest, and what it buys on the demo's table questions.

    .venv/bin/python bench/table_rows.py [--rows N] [--json out.json]

In-process (memory stores, the default embedder, model loaded and warmed first), each case
with row vectors off (``MAX_ROW_VECTORS = 0``, as before they existed) and on:

1. the demo copilot's knowledge (infra/demo/knowledge, 11 files with 6 small tables);
2. a generated product spreadsheet of N rows (openpyxl; SKU, name, category, price, stock),
   of which the first ``MAX_ROW_VECTORS`` rows get a vector;
3. the gate confidence of table questions on the demo (one row each, asked alone and as a
   follow-up) against the medium bar, off and on, and of table-like questions the demo
   knowledge does not answer (each should get the no-match reply).

Results: docs/answer-quality.md ("Table rows").
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path
from typing import Any

from copilot.admin.models import CopilotSpec
from copilot.bootstrap import Container
from copilot.config import Settings
from copilot.conversation.models import Message
from copilot.ingest import service as ingest
from copilot.ingest.service import ObjectEvent
from copilot.knowledge.answer import THRESHOLDS, AnswerPolicy, gate_confidence
from copilot.knowledge.vectors import unpack_all
from copilot_dev.fakes import in_memory_container

DEMO = Path(__file__).resolve().parents[1] / "infra" / "demo" / "knowledge"
# (earlier question or None, question): each is answered by one row of a demo table.
QUESTIONS = [
    (None, "How much is a basic tune-up?"),
    (None, "What does a wheel true cost?"),
    (None, "How much is a brake bleed?"),
    (None, "How much does a full service cost?"),
    (None, "What does an e-bike diagnostic cost?"),
    (None, "How long is the warranty on e-bike motors?"),
    (None, "How long is the warranty on suspension forks?"),
    (None, "How much is standard shipping?"),
    (None, "How long does express shipping take?"),
    (None, "When does the Portland workshop open on Saturday?"),
    ("Do you offer a basic tune-up?", "And how much does it cost?"),
    ("What is the warranty on frames?", "and on batteries?"),
    ("What are the Seattle workshop hours?", "And on Sunday?"),
]
# Table-like questions the demo knowledge does not answer: each should get the no-match reply.
UNANSWERABLE = [
    "How much is a new saddle?",
    "What does an oil change cost?",
    "How much does a frame repair cost?",
    "How much is a helmet?",
    "What is the warranty on helmets?",
    "Do you sell car tires?",
    "How much is a chain replacement?",
    "How much does it cost to paint a bike?",
    "Can I rent a bike?",
    "What is the price of a carbon wheel set?",
    "Do you repair scooters?",
    "How long does a full suspension rebuild take?",
    "What does a puncture-proof tire cost?",
    "What does a custom wheel build cost?",
    "How much is a bike fit session?",
    "What is the warranty on bike computers?",
]


def spreadsheet(rows: int) -> bytes:
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Products"
    sheet.append(["SKU", "Name", "Category", "Price", "In stock"])
    categories = ["Helmets", "Lights", "Locks", "Tires", "Saddles", "Pedals", "Bags", "Tools"]
    for n in range(rows):
        category = categories[n % len(categories)]
        sheet.append([f"NW-{n:05d}", f"{category[:-1]} model {n}", category, 10 + n % 90, n % 7])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def index(container: Container, files: dict[str, bytes]) -> tuple[str, float, int, int]:
    copilot_id = container.admin.create(CopilotSpec(name="bench")).copilot_id
    started, chunks = time.perf_counter(), 0
    for name, body in files.items():
        key = f"{copilot_id}/{name}"
        container.blobs.put(key, body)
        result = container.ingest.handle(ObjectEvent(bucket="kb", key=key, created=True))
        assert result.status == "indexed", (name, result)
        chunks += result.chunks or 0
    seconds = time.perf_counter() - started
    dimension = len(container.embedder.embed_query("a row"))
    rows = sum(
        len(unpack_all(c.row_vectors, dimension)) if c.row_vectors else 0
        for c in container.index.all_chunks(copilot_id)
    )
    container.lexical.rebuild(copilot_id)
    return copilot_id, seconds, chunks, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    container = in_memory_container(Settings(bucket="kb"))
    container.embedder.embed_documents(["warm up the model"] * 8)
    demo = {p.name: p.read_bytes() for p in sorted(DEMO.iterdir())}
    sheet = {"products.xlsx": spreadsheet(args.rows)}
    policy, bar = AnswerPolicy(), THRESHOLDS["medium"]
    cap, out = ingest.MAX_ROW_VECTORS, {"rows": args.rows, "cap": ingest.MAX_ROW_VECTORS}
    cases: dict[str, Any] = {}
    for label, limit in (("off", 0), ("on", cap)):
        ingest.MAX_ROW_VECTORS = limit
        copilot_id, demo_s, demo_chunks, demo_rows = index(container, demo)
        _, sheet_s, sheet_chunks, sheet_rows = index(container, sheet)
        copilot = container.copilots.get(copilot_id)
        assert copilot is not None
        scores = []
        for earlier, question in QUESTIONS:
            history = [Message(seq=1, role="customer", text=earlier)] if earlier else []
            retrieval = container.answerer.search(copilot_id, question, lambda h=history: h)
            answer = container.answerer.answer(copilot, question, lambda h=history: h)
            scores.append(
                {
                    "earlier": earlier,
                    "question": question,
                    "confidence": round(gate_confidence(question, retrieval, policy), 3),
                    "answered": answer is not None,
                    "reply": answer.text.split("\n\nSources:")[0] if answer else None,
                }
            )
        declined = []
        for question in UNANSWERABLE:
            retrieval = container.answerer.search(copilot_id, question)
            answer = container.answerer.answer(copilot, question)
            declined.append(
                {
                    "question": question,
                    "confidence": round(gate_confidence(question, retrieval, policy), 3),
                    "answered": answer is not None,
                    "reply": answer.text.split("\n\nSources:")[0] if answer else None,
                }
            )
        cases[label] = {
            "demo": {"seconds": round(demo_s, 2), "chunks": demo_chunks, "row_vectors": demo_rows},
            "spreadsheet": {
                "seconds": round(sheet_s, 2),
                "chunks": sheet_chunks,
                "row_vectors": sheet_rows,
            },
            "questions": scores,
            "answered": sum(s["answered"] for s in scores),
            "unanswerable": declined,
            "wrongly_answered": sum(s["answered"] for s in declined),
        }
    ingest.MAX_ROW_VECTORS = cap
    out["cases"] = cases
    print(f"row vectors: off / on (cap {cap} rows a document); medium bar {bar}")
    for part in ("demo", "spreadsheet"):
        off, on = cases["off"][part], cases["on"][part]
        print(
            f"  {part:11} ingest {off['seconds']:.2f} s / {on['seconds']:.2f} s; "
            f"{on['chunks']} chunks, {on['row_vectors']} row vectors"
        )
    for off, on in zip(cases["off"]["questions"], cases["on"]["questions"], strict=True):
        asked = f"{on['earlier']} + {on['question']}" if on["earlier"] else on["question"]
        marks = "".join("A" if s["answered"] else "-" for s in (off, on))
        print(f"  {off['confidence']:.3f} -> {on['confidence']:.3f} {marks}  {asked}")
    print(f"  answered {cases['off']['answered']} -> {cases['on']['answered']} of {len(QUESTIONS)}")
    print("unanswerable (should get the no-match reply):")
    for off, on in zip(cases["off"]["unanswerable"], cases["on"]["unanswerable"], strict=True):
        marks = "".join("A" if s["answered"] else "-" for s in (off, on))
        print(f"  {off['confidence']:.3f} -> {on['confidence']:.3f} {marks}  {on['question']}")
    wrong = f"{cases['off']['wrongly_answered']} -> {cases['on']['wrongly_answered']}"
    print(f"  answered anyway {wrong} of {len(UNANSWERABLE)}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
