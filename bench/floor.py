"""The embedder-only floor of indexing: parse, chunk and embed a pack's files in one process,
no storage, no queue, no emulator — what indexing would cost if storage were free.

    .venv/bin/python bench/floor.py [--pack mtrag|small] [--json out.json]

``mtrag``: the MTRAG dev pack's 846 Markdown files; ``small``: the 4,000 FAQ-sized files of
``bench/ingest.py --only small`` (the same generator and seed). The texts embedded are the ones
the ingest function embeds for a new file (IngestService._embed_many: each chunk with its
heading, each distinct heading, table rows; duplicates once), in one ``embed_documents`` call
of the configured embedder (COPILOT_EMBEDDER, default MiniLM) after one warm-up call. Prints
the time of each stage (parse + chunk, embed) in CPU and wall seconds, and docs/s.

Compare with bench/ingest.py's figure for the same pack on the same day: the target of issue 18
is the local stack within 1.5x of this floor. Results: docs/benchmarks-ingest.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
EVAL = Path("/work/shared/eval")
sys.path.insert(0, str(BENCH))


def pack_files(pack: str, tmp: Path) -> tuple[list[Path], Path]:
    if pack == "mtrag":
        root = EVAL / "mtrag" / "docs"
        return sorted(root.glob("*.md")), root
    from _ingest_corpus import write_faq_files

    from ingest import SMALL_FILES

    root = tmp / "faq"
    return write_faq_files(root, SMALL_FILES, EVAL), root


def texts_to_embed(files: list[Path], root: Path) -> tuple[list[str], int]:
    """What the ingest function embeds for these files as new ones, deduplicated as it does."""
    from copilot.ingest.chunking import chunk_document
    from copilot.ingest.service import MAX_ROW_VECTORS, _embedding_text, _heading
    from copilot.knowledge.models import part_texts

    wanted: list[str] = []
    chunks_total = 0
    for path in files:
        key = path.relative_to(root).as_posix()
        chunks = chunk_document("floor", key, path.read_bytes(), "v1")
        chunks_total += len(chunks)
        wanted += [_embedding_text(c.title, c.section, c.text) for c in chunks]
        wanted += [_heading(c.title, c.section) for c in chunks]
        budget = MAX_ROW_VECTORS
        for c in chunks:
            rows = part_texts(c)[:budget] if budget > 0 else []
            budget -= len(rows)
            wanted += rows
    return list(dict.fromkeys(wanted)), chunks_total


def timed(job: Any) -> tuple[Any, float, float]:
    c0, w0 = time.process_time(), time.perf_counter()
    out = job()
    return out, time.process_time() - c0, time.perf_counter() - w0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack", choices=("mtrag", "small"), default="mtrag")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)

    from copilot.adapters.providers.factory import build_embeddings
    from copilot.config import ProviderSettings

    with tempfile.TemporaryDirectory() as tmp:
        files, root = pack_files(args.pack, Path(tmp))
        (texts, chunks), parse_cpu, parse_wall = timed(lambda: texts_to_embed(files, root))
    settings = ProviderSettings()
    embedder = build_embeddings(settings)
    embedder.embed_documents(["warm-up: the model loads and its first call settles"])
    vectors, embed_cpu, embed_wall = timed(lambda: embedder.embed_documents(texts))
    assert len(vectors) == len(texts)
    wall = parse_wall + embed_wall
    out = {
        "pack": args.pack,
        "embedder": settings.embedder,
        "files": len(files),
        "chunks": chunks,
        "texts_embedded": len(texts),
        "chars_embedded": sum(len(t) for t in texts),
        "parse_chunk": {"cpu_s": round(parse_cpu, 2), "wall_s": round(parse_wall, 2)},
        "embed": {"cpu_s": round(embed_cpu, 2), "wall_s": round(embed_wall, 2)},
        "wall_s": round(wall, 2),
        "docs_per_s": round(len(files) / wall, 2),
    }
    print(
        f"{args.pack}: {len(files)} files, {chunks} chunks, {len(texts)} texts embedded "
        f"({settings.embedder}); parse+chunk {parse_wall:.1f} s (CPU {parse_cpu:.1f} s), "
        f"embed {embed_wall:.1f} s (CPU {embed_cpu:.1f} s); floor {out['docs_per_s']} docs/s",
        flush=True,
    )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
