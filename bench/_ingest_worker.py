"""One ingest worker process for bench/ingest.py (think: one warm Lambda instance).

    python bench/_ingest_worker.py CONFIG.json

Builds a ``copilot.bootstrap.Container`` with the real adapters (DynamoDB and S3 on the moto
server, the Chroma server, WordLlama), each wrapped in a stage timer; indexes the warm-up keys
(untimed: imports, model load, collection lookup), prints ``READY``, waits for ``GO`` on stdin,
then calls ``IngestService.handle`` for each of its keys in turn and prints one JSON line with
the per-document timings and the stage totals.
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _ingest_common import StageClock, Timed, instrument_chunking


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    os.environ.update(config["env"])

    from copilot.bootstrap import Container
    from copilot.config import Settings
    from copilot.ingest.service import ObjectEvent

    clock = StageClock()
    instrument_chunking(clock)
    real = Container(Settings())
    overrides = {
        name: Timed(getattr(real, name), name, clock)
        for name in ("copilots", "documents", "blobs", "index", "embedder")
    }
    # The lexical (BM25) side, where the product has it; the queue only when configured.
    if hasattr(real, "lexical_store"):
        overrides["lexical_store"] = Timed(real.lexical_store, "lexical_store", clock)
    if real.settings.ingest_queue_url:
        overrides["ingest_queue"] = Timed(real.ingest_queue, "ingest_queue", clock)
    container = Container(real.settings, **overrides)
    service = container.ingest
    lexical = getattr(container, "lexical", None)
    if lexical is not None and hasattr(lexical, "rebuild"):
        lexical.rebuild = Timed(lexical, "lexical", clock).rebuild  # instance attribute
    bucket = real.settings.bucket

    def handle(key: str) -> dict[str, object]:
        t = time.perf_counter()
        result = service.handle(ObjectEvent(bucket=bucket, key=key, created=True))
        return {
            "key": key,
            "seconds": time.perf_counter() - t,
            "status": result.status,
            "reason": result.reason,
            "chunks": result.chunks,
        }

    warm = [handle(k) for k in config["warmup_keys"]]
    bad = [w for w in warm if w["status"] != "indexed"]
    if bad:
        raise SystemExit(f"warm-up failed: {bad}")
    clock.reset()
    print("READY", flush=True)
    if sys.stdin.readline().strip() != "GO":
        return

    profiler = cProfile.Profile() if config.get("profile") else None
    cpu0, t0 = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    docs = [handle(k) for k in config["keys"]]
    if profiler:
        profiler.disable()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    seconds, calls = clock.snapshot()
    out: dict[str, object] = {
        "pid": os.getpid(),
        "wall": wall,
        "cpu": cpu,
        "docs": docs,
        "stage_seconds": seconds,
        "stage_calls": calls,
        "first_warmup_seconds": warm[0]["seconds"] if warm else None,
    }
    if config.get("rebuild_after") and lexical is not None:
        # What the deferred rebuild (one queue message per burst of changes) costs at the end.
        t = time.perf_counter()
        count = lexical.rebuild(config["copilot_id"])
        out["lexical_rebuild_after"] = {"seconds": time.perf_counter() - t, "chunks": count}
    if profiler:
        buffer = io.StringIO()
        stats = pstats.Stats(profiler, stream=buffer)
        stats.sort_stats("tottime").print_stats(config.get("profile_top", 25))
        out["profile"] = buffer.getvalue()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
