"""Re-indexing cost when pages change a little: index 40 MTRAG pages, then re-index them with
one section added to each (in-process, memory stores, the default embedder). Unchanged
chunks keep their stored vectors, so only the new sections are embedded.

    .venv/bin/python bench/reindex_reuse.py [--pages N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from copilot.admin.models import CopilotSpec
from copilot.config import Settings
from copilot.ingest.service import ObjectEvent
from copilot_dev.fakes import in_memory_container

PACK = Path(__file__).resolve().parents[2] / "shared" / "eval" / "mtrag" / "docs"
EDIT = "\n\n## Update\n\nThis page was reviewed in December."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=40)
    args = parser.parse_args()
    container = in_memory_container(Settings(bucket="kb"))
    copilot_id = container.admin.create(CopilotSpec(name="reuse")).copilot_id
    files = sorted(PACK.glob("*.md"))[: args.pages]

    def run(edit: bool) -> tuple[float, int]:
        started, chunks = time.perf_counter(), 0
        for path in files:
            key = f"{copilot_id}/{path.name}"
            container.blobs.put(key, (path.read_text() + (EDIT if edit else "")).encode())
            result = container.ingest.handle(ObjectEvent(bucket="kb", key=key, created=True))
            chunks += result.chunks or 0
        return time.perf_counter() - started, chunks

    seconds, chunks = run(edit=False)
    print(
        f"first index of {len(files)} pages: {seconds:.1f} s, {chunks} chunks (model load included)"
    )
    seconds, chunks = run(edit=True)
    print(f"re-index with one section added to each: {seconds:.1f} s, {chunks} chunks")


if __name__ == "__main__":
    main()
