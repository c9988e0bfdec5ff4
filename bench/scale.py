"""Scale benchmark: one copilot's knowledge base at 1k, 10k and 100k chunks, through the local stack.

    .venv/bin/python bench/scale.py [--sizes 1000,10000,100000] [--json out.json]

For each size, a new copilot in one running local stack (moto server, Chroma server, the three
functions under functions-framework, the SQS pump), and a generated knowledge base:

- filler files (bench/_ingest_corpus.write_scale_files): sections of sentences recombined from
  the MTRAG pack's documents, deterministic, each section one chunk, 50 per file, as many files
  as the size needs (every chunk's text is different: no embedding is reused);
- 24 probe files, each holding one fact and asked about by one question (the warm turns check
  that the reply cites the probe's file: retrieval still finds the right file at that size).

Measured at each size:
1. bulk index: upload every file, wait until each is indexed or failed (docs/s, chunks/s, the
   processes' CPU);
2. one changed file searchable: a probe file is rewritten with a new value; a conversation asks
   its question over HTTP until the reply carries the new value (5 samples, p50);
3. a new chat process (bench/_scale_child.py, a fresh interpreter that imports the chat function
   as Lambda does): time to its first knowledge reply, then 60 warm knowledge turns (p50/p95,
   right-file rate) and its resident memory;
4. the BM25 segments' count and bytes, as stored.

The embedder is the one COPILOT_EMBEDDER names; by default this bench sets ``wordllama`` (the
static model) so that 100k chunks index in minutes: this bench measures how the product's
storage, search and chat process scale, not the model (bench/ingest.py measures the default
MiniLM's throughput). Results and method: docs/benchmarks-ingest.md ("Scale").
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
CHAT_MAIN = ROOT / "functions" / "chat" / "main.py"
CHILD = BENCH / "_scale_child.py"
MTRAG_DOCS = Path("/work/shared/eval/mtrag/docs")
sys.path.insert(0, str(BENCH))

from _ingest_common import CpuSampler  # noqa: E402
from _stats import pct  # noqa: E402

SEED = 18
PROBES = 24
CHUNKS_PER_FILE = 50
CHANGE_SAMPLES = 5
WARM_ROUNDS = 3  # each probe question this many times: 72 warm turns
TARGETS = {"warm_p50_ratio": 2.0, "change_p50_s": 2.0, "cold_first_turn_s": 1.5, "rss_mb": 1024}


def log(message: str) -> None:
    print(message, flush=True)


def bulk_index(stack: Any, client: Any, folder: Path, files: list[Path], name: str) -> dict:
    from copilot_dev.demo import upload_files, wait_indexed

    copilot = client.create_copilot({"name": name})
    cid = copilot.copilot_id
    s3 = stack.client("s3")
    sampler = CpuSampler({n: p.pid for n, p in stack._procs.items()})
    with sampler:
        t0 = time.time()
        versions = upload_files(s3, stack.config.bucket, cid, files, folder)
        uploaded = time.time() - t0
        statuses = wait_indexed(client, cid, versions, timeout=7200, poll=2.0)
        wall = time.time() - t0
    failed = [(d.doc_key, d.error) for d in statuses if d.status != "indexed"]
    chunks = sum(d.chunk_count or 0 for d in statuses if d.status == "indexed")
    t = time.time()
    stack.wait_idle(quiet=1.0, timeout=1800)  # the segment merges it scheduled
    return {
        "copilot_id": cid,
        "files": len(files),
        "chunks": chunks,
        "failed": failed,
        "upload_s": uploaded,
        "index_s": wall,
        "docs_per_s": len(files) / wall,
        "chunks_per_s": chunks / wall,
        "merges_drained_s": time.time() - t,
        "cpu_s": {k: round(v, 1) for k, v in sampler.used.items()},
        "cpu_others_s": round(sampler.others(), 1),
    }


def change_to_searchable(stack: Any, client: Any, cid: str, probes: list[Any]) -> dict:
    """Rewrite a probe file with a new value; ask its question until the reply carries it."""
    from _ingest_corpus import fact_docs

    s3 = stack.client("s3")
    changed = fact_docs(len(probes), SEED + 99)  # same keys and questions, new values
    samples: list[dict[str, Any]] = []
    for i in range(len(probes)):
        if len(samples) == CHANGE_SAMPLES:
            break
        old, new = probes[i], changed[i]
        assert old.doc_key == new.doc_key and old.question == new.question
        fact, old_fact = new.text.split("\n\n")[1], old.text.split("\n\n")[1]
        # The new value: a number of 3+ digits the old fact did not hold (a digit or two
        # could turn up in another reply by chance).
        fresh = [n for n in re.findall(r"\d+", fact) if n not in re.findall(r"\d+", old_fact)]
        fresh = [n for n in fresh if len(n) >= 3]
        if not fresh:
            continue
        value = max(fresh, key=len)
        conversation = client.start(cid)
        stack.wait_idle(quiet=0.5, timeout=600)
        t_put = time.time()
        s3.put_object(
            Bucket=stack.config.bucket,
            Key=f"{cid}/{old.doc_key}",
            Body=new.text.encode(),
            ContentType="text/markdown",
        )
        turns = 0
        sample: dict[str, Any] = {"doc_key": old.doc_key, "value": value}
        while time.time() - t_put < 60:
            turns += 1
            reply = client.send(conversation.conversation_id, conversation.token, old.question)
            text = " ".join(m.text for m in reply.messages if m.role == "copilot")
            if value in text:
                sample["searchable_s"] = time.time() - t_put
                break
            time.sleep(0.05)
        sample["turns"] = turns
        if "searchable_s" not in sample:
            sample["last_reply"] = text[:600]
        samples.append(sample)
        probes[i] = new
    found = [s["searchable_s"] for s in samples if "searchable_s" in s]
    return {
        "samples": samples,
        "p50_s": statistics.median(found) if found else None,
        "max_s": max(found) if found else None,
        "not_found": len(samples) - len(found),
    }


def new_chat_process(stack: Any, client: Any, cid: str, probes: list[Any], env: dict) -> dict:
    conversation = client.start(cid)
    warm = [(p.question, p.doc_key) for _ in range(WARM_ROUNDS) for p in probes[1:]]
    config = {
        "copilot_id": cid,
        "conversation_id": conversation.conversation_id,
        "token": conversation.token,
        "first": probes[0].question,
        "first_doc": probes[0].doc_key,
        "warm": warm,
    }
    cmd = [sys.executable, str(CHILD), str(CHAT_MAIN), json.dumps(config)]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"chat probe failed: {proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    turns = result.pop("warm_ms")
    result["warm_turns"] = len(turns)
    result["warm_p50_ms"] = pct(turns, 50)
    result["warm_p95_ms"] = pct(turns, 95)
    result["warm_right_file_rate"] = result["warm_cited_right"] / len(turns)
    return result


def segments(stack: Any, cid: str) -> dict[str, Any]:
    s3 = stack.client("s3")
    objects = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=stack.config.bucket, Prefix=f"_lexical/{cid}/"
    ):
        objects += page.get("Contents") or []
    return {"count": len(objects), "bytes": sum(o["Size"] for o in objects)}


def run_size(stack: Any, client: Any, env: dict, size: int, tmp: Path) -> dict[str, Any]:
    from _ingest_corpus import fact_docs, write_scale_files

    from copilot.ingest.chunking import chunk_document

    folder = tmp / f"kb-{size}"
    probes = fact_docs(PROBES, SEED + 98)
    probe_chunks = 0
    for p in probes:
        path = folder / p.doc_key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(p.text, encoding="utf-8")
        probe_chunks += len(chunk_document("c", p.doc_key, p.text.encode(), "v"))
    filler = write_scale_files(
        folder / "kb", size - probe_chunks, CHUNKS_PER_FILE, MTRAG_DOCS, SEED
    )
    files = sorted(folder.rglob("*.md"))
    log(f"{size} chunks: {len(files)} files ({len(filler)} filler) ...")
    out: dict[str, Any] = {"target_chunks": size}
    out["bulk"] = bulk_index(stack, client, folder, files, f"Scale {size}")
    cid = out["bulk"]["copilot_id"]
    b = out["bulk"]
    log(
        f"  indexed {b['chunks']} chunks in {b['index_s']:.1f} s ({b['docs_per_s']:.1f} files/s, "
        f"{b['chunks_per_s']:.0f} chunks/s), {len(b['failed'])} failed"
    )
    out["segments"] = segments(stack, cid)
    out["chat"] = new_chat_process(stack, client, cid, probes, env)
    c = out["chat"]
    log(
        f"  new chat process: first reply {c['cold_total_ms']:.0f} ms after start "
        f"(first turn {c['first_turn_ms']:.0f} ms); warm p50 {c['warm_p50_ms']:.0f} ms, "
        f"p95 {c['warm_p95_ms']:.0f} ms, right file {c['warm_right_file_rate']:.0%}; "
        f"RSS {c['rss_mb']:.0f} MB"
    )
    out["change"] = change_to_searchable(stack, client, cid, probes)
    log(f"  one changed file searchable: p50 {out['change']['p50_s']} s")
    out["segments_after_changes"] = segments(stack, cid)
    return out


def render(results: dict[str, Any]) -> str:
    rows = [
        "| chunks (files) | bulk index | one change → searchable p50 (max) | new chat process: "
        "first reply | warm turn p50 / p95 | right file | chat RSS | BM25 segments |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["sizes"]:
        b, c, ch, s = r["bulk"], r["chat"], r["change"], r["segments"]
        rows.append(
            f"| {b['chunks']:,} ({b['files']:,}) | {b['index_s']:.0f} s ({b['chunks_per_s']:.0f} "
            f"chunks/s) | {ch['p50_s'] or float('nan'):.2f} s ({ch['max_s'] or float('nan'):.2f})"
            f" | {c['cold_total_ms'] / 1000:.2f} s | {c['warm_p50_ms']:.0f} / "
            f"{c['warm_p95_ms']:.0f} ms | {c['warm_right_file_rate']:.0%} | {c['rss_mb']:.0f} MB"
            f" | {s['count']}, {s['bytes'] / 1e6:.1f} MB |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    os.environ.setdefault("COPILOT_EMBEDDER", "wordllama")
    logging.basicConfig(level=logging.WARNING)
    from copilot_dev.client import CopilotClient
    from copilot_dev.localstack import StackConfig
    from ingest import bench_stack_class

    results: dict[str, Any] = {"embedder": os.environ["COPILOT_EMBEDDER"], "sizes": []}
    t_bench = time.time()
    with tempfile.TemporaryDirectory(prefix="copilot-scale-") as tmp_name:
        tmp = Path(tmp_name)
        config = StackConfig.with_free_ports(ROOT, tmp / "stack")
        config.extra_env = {"COPILOT_EMBEDDER": os.environ["COPILOT_EMBEDDER"]}
        stack = bench_stack_class()(config)
        stack.start()
        try:
            client = CopilotClient(config.function_url("chat"), admin_key=config.admin_api_key)
            env = {**os.environ, **config.env(), "AWS_LAMBDA_FUNCTION_NAME": "copilot-scale"}
            for size in sizes:
                results["sizes"].append(run_size(stack, client, env, size, tmp))
                if args.json:
                    args.json.write_text(json.dumps(results, indent=2, default=str))
        finally:
            stack.stop()
    base = results["sizes"][0]["chat"]["warm_p50_ms"]
    for r in results["sizes"]:
        r["warm_p50_vs_first_size"] = r["chat"]["warm_p50_ms"] / base
    results["targets"] = TARGETS
    results["bench_wall_s"] = time.time() - t_bench
    log("")
    log(render(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
