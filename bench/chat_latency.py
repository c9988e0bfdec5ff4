"""Chat function latency: Lambda-style cold start, warm turns server side, warm turns over HTTP.

    .venv/bin/python bench/chat_latency.py [--samples N] [--turns N] [--json out.json]

Starts the real local stack in-process (moto server, Chroma server, the three functions under
functions-framework, the SQS pump), seeds the demo copilot through the real upload pipeline, then
measures:

1. cold start: each sample is a NEW interpreter (bench/_cold_child.py) that imports
   functions/chat/main.py by path, as Lambda does, and answers one message through
   ``lambda_handler`` with an API Gateway HTTP API v2 event. Knowledge-question and greeting
   ("hi") first turns, plus a "phased" run that times each lazy init on its own; one extra run
   under ``python -X importtime`` lists what the imports cost.
2. warm knowledge turns server side: ``lambda_handler(event, None)`` in this process (no HTTP).
3. warm knowledge turns over HTTP: ``CopilotClient.send`` against functions-framework (gunicorn).

See docs/benchmarks.md for results and targets.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib.util
import inspect
import json
import logging
import os
import platform
import pstats
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
CHAT_MAIN = ROOT / "functions" / "chat" / "main.py"
CHILD = BENCH / "_cold_child.py"
DEMO_DIR = ROOT / "infra" / "demo"

sys.path.insert(0, str(BENCH))

from _apigw import (  # noqa: E402
    copilot_replies,
    has_citation,
    post_message_event,
    start_conversation_event,
)
from _stats import pct, summary  # noqa: E402

# Knowledge questions about infra/demo/knowledge/*.md. None of them matches a custom or system
# topic of the demo copilot, so every one goes through retrieval and must come back cited.
QUESTIONS = [
    "How long does standard shipping take?",
    "How long is the password reset link valid?",
    "How should I store my e-bike battery over the winter?",
    "Is the Seattle workshop open on Monday?",
    "How many days do I have to return an item?",
    "How long is the warranty on frames?",
    "Which payment methods do you accept online?",
    "What if the tracking says delivered but I can't find the package?",
    "Which frame size fits a rider who is 180 cm tall?",
    "What is the phone number of Customer Care?",
]
GREETING = "hi"
TARGET_COLD_MS = 1500.0
TARGET_WARM_P50_MS = 50.0
TURNS_PER_CONVERSATION = 20


def med(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


# --- the stack -----------------------------------------------------------------------------------


# The bench's copilot: every bucket checked on every turn (as deployed), none ever refusing.
UNLIMITED = {"burst": 100_000, "per_minute": 100_000}
BENCH_LIMITS = {
    "starts_per_client": UNLIMITED,
    "posts_per_client": UNLIMITED,
    "posts_per_conversation": UNLIMITED,
    "polls_per_conversation": UNLIMITED,
}


def start_stack(tmp: Path, rate_limits: bool = True) -> tuple[Any, Any, Any]:
    from copilot_dev.client import CopilotClient
    from copilot_dev.demo import seed_demo
    from copilot_dev.localstack import LocalStack, StackConfig

    config = StackConfig.with_free_ports(ROOT, tmp)
    config.rate_limits = rate_limits
    stack = LocalStack(config)
    t = time.perf_counter()
    stack.start()
    started = time.perf_counter() - t
    try:
        client = CopilotClient(config.function_url("chat"), admin_key=config.admin_api_key)
        t = time.perf_counter()
        copilot, docs = seed_demo(client, stack.client("s3"), config.bucket, DEMO_DIR)
        seeded = time.perf_counter() - t
        if rate_limits:
            copilot = client.update_copilot(copilot.copilot_id, {"limits": BENCH_LIMITS})
        failed = [d.doc_key for d in docs if d.status != "indexed"]
        if failed:
            raise RuntimeError(f"demo documents not indexed: {failed}")
        print(
            f"stack up in {started:.1f} s; demo copilot {copilot.copilot_id} seeded "
            f"({len(docs)} documents) in {seeded:.1f} s",
            flush=True,
        )
    except BaseException:
        stack.stop()
        raise
    return stack, client, copilot


class Purger:
    """Deletes the bench's finished conversations so the conversations table stays small.

    moto's TransactWriteItems deep-copies the whole table once per item in the transaction
    (its rollback backup), so on the emulator every turn's write slows down linearly with the
    number of stored messages; DynamoDB's does not depend on table size. Keeping the table to
    a few dozen items makes the local figures independent of how long the bench has run.
    """

    def __init__(self, ddb: Any) -> None:
        from copilot.adapters.aws.dynamo import DynamoConversationStore
        from copilot.config import Settings

        self.ddb = ddb
        self.table = Settings().conversations_table
        self._pk = DynamoConversationStore._pk  # the adapter's own key format
        self.deleted = 0

    def purge(self, conversation_id: str) -> None:
        keys: list[dict[str, Any]] = []
        pages = self.ddb.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": self._pk(conversation_id)}},
            ProjectionExpression="pk, sk",
            ConsistentRead=True,
        )
        for page in pages:
            keys += page["Items"]
        if not keys:
            raise RuntimeError(f"purge: conversation {conversation_id} has no items")
        for i in range(0, len(keys), 25):
            batch = [{"DeleteRequest": {"Key": k}} for k in keys[i : i + 25]]
            unprocessed = {self.table: batch}
            while unprocessed:
                r = self.ddb.batch_write_item(RequestItems=unprocessed)
                unprocessed = r.get("UnprocessedItems") or {}
        self.deleted += len(keys)

    def item_count(self) -> int:
        return int(self.ddb.scan(TableName=self.table, Select="COUNT")["Count"])


# --- 1. cold start -------------------------------------------------------------------------------


def spawn_child(
    env: dict[str, str],
    mode: str,
    conversation: Any,
    text: str,
    second_text: str,
    importtime: bool = False,
) -> dict[str, Any]:
    config = {
        "conversation_id": conversation.conversation_id,
        "token": conversation.token,
        "text": text,
        "second_text": second_text,
    }
    cmd = [sys.executable]
    if importtime:
        cmd += ["-X", "importtime"]
    cmd += [str(CHILD), str(CHAT_MAIN), mode, json.dumps(config)]
    t_spawn = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    t_exit = time.perf_counter()
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"cold-start probe failed (rc={proc.returncode}):\n{proc.stdout[-2000:]}\n"
            f"{proc.stderr[-4000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    result["wall_ms"] = (t_exit - t_spawn) * 1000
    if _shared_clock():
        # Both sides read CLOCK_MONOTONIC: spawn -> the child's first statement.
        result["startup_ms"] = (result["started_at"] - t_spawn) * 1000
    else:
        result["startup_ms"] = None
    if importtime:
        result["importtime_stderr"] = proc.stderr
    return result


def _shared_clock() -> bool:
    return sys.platform.startswith("linux") and "CLOCK_MONOTONIC" in (
        time.get_clock_info("perf_counter").implementation
    )


def check_child(result: dict[str, Any], expect: str) -> None:
    if result["status"] != 200 or result["second_status"] != 200:
        raise RuntimeError(f"cold start answered {result['status']}: {result['reply']}")
    if expect == "citation" and not result["cited"]:
        raise RuntimeError(f"cold-start knowledge answer has no citation: {result['reply']!r}")
    if expect == "greeting" and "Greeting" not in result["topics"]:
        raise RuntimeError(f"'{GREETING}' was not answered by the greeting: {result['topics']}")


def stdlib_only_pycache(prefix: Path) -> int:
    """A PYTHONPYCACHEPREFIX tree holding the standard library's bytecode and nothing else.

    With it (and PYTHONDONTWRITEBYTECODE=1) a child compiles every third-party and project
    module from source on import, as on Lambda with the layer infra/deploy/build_layer.sh builds
    (it deletes all .pyc) and the function zip serverless.yml packages (it excludes *.pyc), while
    the runtime's own standard library keeps its bytecode.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    tag = sys.implementation.cache_tag
    count = 0
    for pyc in stdlib.rglob(f"__pycache__/*.{tag}.pyc"):
        if "site-packages" in pyc.parts:
            continue
        target = prefix / pyc.parent.parent.relative_to("/") / pyc.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(pyc)
        count += 1
    return count


def bare_interpreter(env: dict[str, str], samples: int) -> list[float]:
    """Spawn -> exit of ``python -c pass`` (site + .pth files of the venv included)."""
    times = []
    for _ in range(samples):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
        times.append((time.perf_counter() - t) * 1000)
    return times


def cold_starts(
    client: Any, copilot_id: str, env: dict[str, str], samples: int, tmp: Path, purger: Purger
) -> dict[str, Any]:
    started: list[str] = []

    def new_conv() -> Any:
        for conversation_id in started:  # the previous probe has exited: drop its conversation
            purger.purge(conversation_id)
        started.clear()
        conv = client.start(copilot_id)
        started.append(conv.conversation_id)
        return conv

    # Same as on Lambda for the function's own code: shared/copilot and functions/ are shipped
    # without .pyc (serverless.yml excludes them) on a read-only disk, so they are compiled on
    # every cold start. Installed packages keep the .pyc files pip wrote.
    env = {**env, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPYCACHEPREFIX", None)
    nopyc_env = {**env, "PYTHONPYCACHEPREFIX": str(tmp / "pycache-stdlib-only")}
    stdlib_pycs = stdlib_only_pycache(Path(nopyc_env["PYTHONPYCACHEPREFIX"]))
    nopyc_samples = min(samples, 3)

    # One unrecorded run warms the page cache, so every sample starts from the same state: a
    # fresh process, files already in memory.
    check_child(spawn_child(env, "turn", new_conv(), QUESTIONS[0], QUESTIONS[1]), "citation")

    runs: dict[str, list[dict[str, Any]]] = {
        "knowledge": [],
        "greeting": [],
        "phased": [],
        "knowledge_no_pyc": [],
    }
    for i in range(samples):
        q, q2 = QUESTIONS[i % len(QUESTIONS)], QUESTIONS[(i + 1) % len(QUESTIONS)]
        r = spawn_child(env, "turn", new_conv(), q, q2)
        check_child(r, "citation")
        runs["knowledge"].append(r)
        r = spawn_child(env, "turn", new_conv(), GREETING, q2)
        check_child(r, "greeting")
        runs["greeting"].append(r)
        r = spawn_child(env, "phased", new_conv(), q, q2)
        check_child(r, "citation")
        runs["phased"].append(r)
        if i < nopyc_samples:
            r = spawn_child(nopyc_env, "turn", new_conv(), q, q2)
            check_child(r, "citation")
            runs["knowledge_no_pyc"].append(r)
        k, g = runs["knowledge"][-1], runs["greeting"][-1]
        print(
            f"  cold sample {i + 1}/{samples}: knowledge {k['total_ms']:.0f} ms "
            f"(imports {k['imports_ms']:.0f} + first turn {k['first_turn_ms']:.0f}), "
            f"greeting {g['total_ms']:.0f} ms",
            flush=True,
        )

    it = spawn_child(env, "turn", new_conv(), QUESTIONS[2], QUESTIONS[3], importtime=True)
    check_child(it, "citation")
    for conversation_id in started:
        purger.purge(conversation_id)
    stderr = it.pop("importtime_stderr")
    return {
        "stdlib_pycs_linked": stdlib_pycs,
        "runs": runs,
        "bare_interpreter_ms": bare_interpreter(env, samples),
        "importtime": parse_importtime(stderr),
        "importtime_run": {k: it[k] for k in ("imports_ms", "first_turn_ms", "total_ms")},
    }


# --- python -X importtime ------------------------------------------------------------------------


def _is_project(name: str) -> bool:
    return name == "copilot" or name.startswith("copilot.")


def parse_importtime(stderr: str) -> dict[str, Any]:
    """Per phase: the external packages pulled in, with their cumulative import cost.

    Walks the import tree; project modules (``copilot.*``) are transparent, so each external
    import is charged to the phase and the project module that triggered it.
    """
    phase = "startup"
    nodes: list[dict[str, Any]] = []  # roots, in order, with children
    pending: dict[int, list[dict[str, Any]]] = {}
    for line in stderr.splitlines():
        if line.startswith("@@phase "):
            phase = line.split(" ", 1)[1].strip()
            continue
        if not line.startswith("import time:") or "imported package" in line:
            continue
        parts = line[len("import time:") :].split("|")
        self_us, cum_us, raw = int(parts[0]), int(parts[1]), parts[2]
        name = raw[1:] if raw.startswith(" ") else raw
        level = (len(name) - len(name.lstrip(" "))) // 2
        node = {
            "name": name.strip(),
            "self_us": self_us,
            "cum_us": cum_us,
            "phase": phase,
            "children": pending.pop(level + 1, []),
        }
        pending.setdefault(level, []).append(node)
        if level == 0:
            nodes.extend(pending.pop(0))

    external: list[dict[str, Any]] = []
    project_self_us: dict[str, int] = {}

    def walk(node: dict[str, Any], via: str) -> None:
        if _is_project(node["name"]):
            project_self_us[node["phase"]] = project_self_us.get(node["phase"], 0) + node["self_us"]
            for child in node["children"]:
                walk(child, node["name"])
        else:
            external.append(
                {
                    "name": node["name"],
                    "cum_ms": node["cum_us"] / 1000,
                    "phase": node["phase"],
                    "imported_by": via,
                }
            )

    for root in nodes:
        walk(root, "functions/chat/main.py" if root["phase"] == "imports" else "(lazy, at call)")

    by_phase: dict[str, float] = {}
    for e in external:
        by_phase[e["phase"]] = by_phase.get(e["phase"], 0) + e["cum_ms"]
    for p, us in project_self_us.items():
        by_phase[p] = by_phase.get(p, 0) + us / 1000

    # Grouped by top-level package, so "chromadb" and "chromadb.api" add up.
    grouped: dict[tuple[str, str], dict[str, Any]] = {}
    for e in external:
        if e["phase"] not in ("imports", "first_turn"):
            continue
        key = (e["name"].split(".")[0], e["phase"])
        g = grouped.setdefault(
            key, {"package": key[0], "phase": key[1], "cum_ms": 0.0, "imported_by": set()}
        )
        g["cum_ms"] += e["cum_ms"]
        g["imported_by"].add(e["imported_by"])
    top = sorted(grouped.values(), key=lambda g: -g["cum_ms"])
    for g in top:
        g["imported_by"] = sorted(g["imported_by"])

    # What the heaviest packages pull in: the first module of another package on each path.
    def boundary(node: dict[str, Any], pkg: str, out: dict[str, float]) -> None:
        for child in node["children"]:
            child_pkg = child["name"].split(".")[0]
            if child_pkg != pkg and not _is_project(child["name"]):
                out[child_pkg] = out.get(child_pkg, 0.0) + child["cum_us"] / 1000
            else:
                boundary(child, pkg, out)

    pulls: dict[str, dict[str, float]] = {}

    def find(node: dict[str, Any]) -> None:
        pkg = node["name"].split(".")[0]
        if not _is_project(node["name"]) and node["phase"] in ("imports", "first_turn"):
            boundary(node, pkg, pulls.setdefault(pkg, {}))
            return
        for child in node["children"]:
            find(child)

    for root in nodes:
        find(root)
    for g in top:
        deps = pulls.get(g["package"], {})
        g["pulls_in"] = {
            k: round(v, 1) for k, v in sorted(deps.items(), key=lambda kv: -kv[1])[:8] if v >= 1
        }

    # Who owns the time: self time of every module, summed by top-level package, whoever
    # imported it first (numpy's own cost shows as numpy even though chromadb pulled it in).
    owned: dict[str, float] = {}

    def own(node: dict[str, Any]) -> None:
        if node["phase"] in ("imports", "first_turn"):
            pkg = node["name"].split(".")[0]
            owned[pkg] = owned.get(pkg, 0.0) + node["self_us"] / 1000
        for child in node["children"]:
            own(child)

    for root in nodes:
        own(root)
    return {
        "phase_totals_ms": by_phase,
        "project_self_ms": {p: us / 1000 for p, us in project_self_us.items()},
        "top_packages": top[:25],
        "self_time_by_package_ms": dict(sorted(owned.items(), key=lambda kv: -kv[1])[:30]),
    }


# --- 2. warm turns, server side -------------------------------------------------------------------


def load_chat_main() -> Any:
    spec = importlib.util.spec_from_file_location("bench_chat_main", CHAT_MAIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_chat_main"] = module
    spec.loader.exec_module(module)
    return module


class InProcessChat:
    """Drives the chat function's Lambda handler in this process."""

    def __init__(self, module: Any, copilot_id: str, purger: Purger) -> None:
        self.module = module
        self.copilot_id = copilot_id
        self.purger = purger
        self.conversation_id = ""
        self.token = ""
        self.turns_in_conversation = 0

    def new_conversation(self) -> None:
        self.close()
        r = self.module.lambda_handler(start_conversation_event(self.copilot_id), None)
        if r["statusCode"] != 201:
            raise RuntimeError(f"start conversation: {r['statusCode']} {r['body'][:300]}")
        body = json.loads(r["body"])
        self.conversation_id, self.token = body["conversation_id"], body["token"]
        self.turns_in_conversation = 0

    def close(self) -> None:
        if self.conversation_id:
            self.purger.purge(self.conversation_id)
            self.conversation_id = ""

    def event(self, text: str) -> dict[str, Any]:
        if not self.conversation_id or self.turns_in_conversation >= TURNS_PER_CONVERSATION:
            self.new_conversation()
        self.turns_in_conversation += 1
        return post_message_event(self.conversation_id, self.token, text)


def check_turn(response: dict[str, Any], question: str) -> None:
    if response["statusCode"] != 200:
        raise RuntimeError(f"{question!r}: HTTP {response['statusCode']} {response['body'][:300]}")
    if not has_citation(response):
        replies = [m.get("text", "")[:100] for m in copilot_replies(response)]
        raise RuntimeError(f"{question!r} got no cited answer: {replies}")


def warm_server_side(
    env: dict[str, str], copilot_id: str, turns: int, purger: Purger
) -> dict[str, Any]:
    from copilot import bootstrap

    os.environ.update(env)
    bootstrap.set_container(None)  # fresh container built from the stack's settings
    module = load_chat_main()
    chat = InProcessChat(module, copilot_id, purger)

    for q in QUESTIONS[:3]:  # warm-up: builds clients, loads the embedder, opens collections
        check_turn(module.lambda_handler(chat.event(q), None), q)

    table_items_before = purger.item_count()
    times: list[float] = []
    per_question: dict[str, list[float]] = {q: [] for q in QUESTIONS}
    gc_stats = GcWatch()
    gc.callbacks.append(gc_stats.callback)  # interpreter hook: the code under test is untouched
    try:
        for i in range(turns):
            q = QUESTIONS[i % len(QUESTIONS)]
            event = chat.event(q)  # built (and conversations started) outside the timed region
            t = time.perf_counter()
            response = module.lambda_handler(event, None)
            dt = (time.perf_counter() - t) * 1000
            check_turn(response, q)
            times.append(dt)
            per_question[q].append(dt)
    finally:
        gc.callbacks.remove(gc_stats.callback)

    result = {
        "turns": summary(times),
        "conversations_table_items_at_start": table_items_before,
        "per_question_p50_ms": {q: pct(v, 50) for q, v in per_question.items() if v},
        "gc": gc_stats.report(turns),
        "components": components(chat, module),
        "profile": profile_turns(chat, module, n=2 * len(QUESTIONS)),
    }
    chat.close()
    return result


class GcWatch:
    """Cyclic garbage collections during the timed turns (includes starting conversations)."""

    def __init__(self) -> None:
        self.ms = {0: 0.0, 1: 0.0, 2: 0.0}
        self.count = {0: 0, 1: 0, 2: 0}
        self._t = 0.0

    def callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        else:
            gen = info["generation"]
            self.ms[gen] += (time.perf_counter() - self._t) * 1000
            self.count[gen] += 1

    def report(self, turns: int) -> dict[str, Any]:
        return {
            "ms_per_turn": sum(self.ms.values()) / turns,
            "by_generation": {
                f"gen{g}": {"collections": self.count[g], "total_ms": round(self.ms[g], 2)}
                for g in self.ms
            },
            "tracked_objects_after": len(gc.get_objects()),
        }


def components(chat: InProcessChat, module: Any, rounds: int = 3) -> dict[str, dict[str, float]]:
    """Each piece of a turn called directly (no patching), median over the questions."""
    from copilot import bootstrap

    c = bootstrap.container()
    cid = chat.copilot_id
    chat.new_conversation()
    conv_id = chat.conversation_id
    timings: dict[str, list[float]] = {}

    def timed(name: str, fn: Any) -> Any:
        t = time.perf_counter()
        out = fn()
        timings.setdefault(name, []).append((time.perf_counter() - t) * 1000)
        return out

    from copilot.conversation.models import Message

    scratch = c.conversations.get(conv_id)
    assert scratch is not None
    conversation: Any = scratch

    def append_turn(q: str) -> None:
        # What a turn writes: the conversation's meta item (conditional on its version) plus the
        # customer message and one reply, in one TransactWriteItems (on a scratch conversation).
        nonlocal conversation
        seq = conversation.last_seq
        conversation = c.conversations.append(
            conversation,
            [
                Message(seq=seq + 1, role="customer", text=q),
                Message(seq=seq + 2, role="copilot", text="bench reply " * 20),
            ],
        )

    # KnowledgeAnswerer.answer took the copilot id, and now takes the Copilot: support both.
    first_param = next(iter(inspect.signature(c.answerer.answer).parameters))
    answer_arg: Any = c.copilots.get(cid) if first_param == "copilot" else cid
    answer: Any = c.answerer.answer

    for _ in range(rounds):
        for q in QUESTIONS:
            vec = timed("embed_query (default embedder)", lambda q=q: c.embedder.embed_query(q))
            passages = timed("chroma query (k=8, HTTP)", lambda v=vec: c.index.query(cid, v, 8))
            if hasattr(c.documents, "active_versions"):  # present in newer code only
                keys = [p.chunk.doc_key for p in passages]
                timed(
                    "dynamodb BatchGetItem: active versions",
                    lambda k=keys: c.documents.active_versions(cid, k),
                )
            timed(
                "answerer.answer (embed + query + sentence pick)",
                lambda q=q: answer(answer_arg, q),
            )
            timed("dynamodb GetItem: copilot", lambda: c.copilots.get(cid))
            timed("dynamodb GetItem: conversation", lambda: c.conversations.get(conv_id))
            timed("dynamodb TransactWriteItems: 3 items", lambda q=q: append_turn(q))
    chat.close()
    return {k: {"p50": pct(v, 50), "mean": statistics.fmean(v)} for k, v in timings.items()}


PROFILE_TARGETS = [
    # (label, filename suffix, function name)
    ("lambda_handler (whole turn)", "chat/main.py", "lambda_handler"),
    ("ChatLimits.begin_post (starts the bucket checks)", "conversation/limits.py", "begin_post"),
    ("ConversationService.post_once", "conversation/service.py", "post_once"),
    ("  authorize -> DynamoDB GetItem conversation", "conversation/service.py", "authorize"),
    ("  require_copilot -> DynamoDB GetItem copilot", "admin/lookup.py", "require_copilot"),
    ("  _history -> DynamoDB Query recent messages", "conversation/service.py", "_history"),
    ("  KnowledgeAnswerer.answer", "knowledge/answer.py", "answer"),
    ("    embedder.embed_query (MiniLM or WordLlama)", "providers/offline.py", "embed_query"),
    ("    ChromaKnowledgeIndex.query", "adapters/chroma.py", "query"),
    ("    documents.active_versions (BatchGetItem)", "aws/dynamo.py", "active_versions"),
    (
        "    _best_sentences (lexical sentence choice)",
        "knowledge/answer.py",
        "_best_sentences",
    ),
    ("  DynamoConversationStore.append (TransactWriteItems)", "aws/dynamo.py", "append"),
    ("botocore BaseClient._make_api_call (all AWS calls)", "botocore/client.py", "_make_api_call"),
    ("pydantic model_validate_json (all)", "", "model_validate_json"),
    ("socket connect (new TCP connections)", "~", "<method 'connect' of '_socket.socket' objects>"),
]


def profile_turns(chat: InProcessChat, module: Any, n: int) -> dict[str, Any]:
    """cProfile over n warm turns (separate from the timed run): where a warm turn goes."""
    events = [(q, chat.event(q)) for q in (QUESTIONS * n)[:n]]
    profiler = cProfile.Profile()
    wall = time.perf_counter()
    profiler.enable()
    responses = [module.lambda_handler(e, None) for _, e in events]
    profiler.disable()
    wall = (time.perf_counter() - wall) * 1000
    for (q, _), r in zip(events, responses, strict=True):
        check_turn(r, q)
    stats = pstats.Stats(profiler)
    rows = []
    for label, suffix, func in PROFILE_TARGETS:
        cum = calls = 0.0
        for (filename, _, name), (_, nc, _, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
            if name == func and filename.replace("\\", "/").endswith(suffix):
                cum += ct
                calls += nc
        rows.append({"what": label, "ms_per_turn": cum * 1000 / n, "calls_per_turn": calls / n})
    top = sorted(
        (
            (tt, f"{Path(fn).name}:{ln}({name})")
            for (fn, ln, name), (_, _, tt, _, _) in stats.stats.items()  # type: ignore[attr-defined]
        ),
        reverse=True,
    )[:12]
    return {
        "turns": n,
        "wall_ms_per_turn_profiled": wall / n,
        "rows": rows,
        "top_self_time": [{"where": w, "ms_per_turn": tt * 1000 / n} for tt, w in top],
    }


# --- 3. warm turns over HTTP ---------------------------------------------------------------------


def warm_http(client: Any, copilot_id: str, turns: int, purger: Purger) -> dict[str, Any]:
    conv = None
    used = 0

    def conversation() -> Any:
        nonlocal conv, used
        if conv is None or used >= TURNS_PER_CONVERSATION:
            if conv is not None:
                purger.purge(conv.conversation_id)
            conv, used = client.start(copilot_id), 0
        used += 1
        return conv

    for q in QUESTIONS[:3]:
        c = conversation()
        client.send(c.conversation_id, c.token, q)
    times = []
    for i in range(turns):
        q = QUESTIONS[i % len(QUESTIONS)]
        c = conversation()
        t = time.perf_counter()
        turn = client.send(c.conversation_id, c.token, q)
        times.append((time.perf_counter() - t) * 1000)
        if not any(m.citations for m in turn.messages if m.role == "copilot"):
            raise RuntimeError(f"{q!r} got no cited answer over HTTP")
    if conv is not None:
        purger.purge(conv.conversation_id)
    return {"turns": summary(times)}


# --- report --------------------------------------------------------------------------------------


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()

    def git(*args: str) -> str:
        r = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return r.stdout.rstrip() if r.returncode == 0 else "?"

    dirty = [
        line[3:]
        for line in git("status", "--porcelain", "--", "shared", "functions").splitlines()
        if line.strip()
    ]
    return {
        "git_head": git("rev-parse", "--short", "HEAD"),
        "uncommitted_code_changes": dirty,
        "nproc": nproc,
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def render(results: dict[str, Any]) -> str:
    out: list[str] = []
    w = out.append
    m = results["machine"]
    w(f"machine: {m['nproc']} cores ({m['cpu']}), Python {m['python']}, {m['platform']}")
    dirty = m["uncommitted_code_changes"]
    w(f"code: {m['git_head']}" + (f" + uncommitted changes in {', '.join(dirty)}" if dirty else ""))
    cold = results["cold_start"]
    runs = cold["runs"]
    w("")
    w("COLD START (a new interpreter per sample), ms")
    w(f"  {'':44} {'median':>8} {'min':>8} {'max':>8}")

    def line(label: str, values: list[float]) -> None:
        w(f"  {label:44} {statistics.median(values):8.0f} {min(values):8.0f} {max(values):8.0f}")

    kinds = (
        ("knowledge", "knowledge question"),
        ("greeting", f"greeting '{GREETING}'"),
        ("knowledge_no_pyc", "knowledge question, NO .pyc outside the stdlib"),
    )
    for kind, title in kinds:
        rs = runs[kind]
        w(f" first turn = {title}, n={len(rs)}:")
        line("imports (functions/chat/main.py)", [r["imports_ms"] for r in rs])
        line("first turn (lazy init + answer)", [r["first_turn_ms"] for r in rs])
        line("total = imports + first turn", [r["total_ms"] for r in rs])
        line("  CPU time of that total (process_time)", [r["cpu_total_ms"] for r in rs])
        line("second turn: knowledge q., same process", [r["second_turn_ms"] for r in rs])
        if all(r["startup_ms"] is not None for r in rs):
            line("interpreter startup (spawn -> first line)", [r["startup_ms"] for r in rs])
        line("runtime setup: root log handler (excluded)", [r["runtime_setup_ms"] for r in rs])
        line("wall, spawn -> exit (parent's view)", [r["wall_ms"] for r in rs])
    line("bare interpreter, `python -c pass`", cold["bare_interpreter_ms"])
    w(" phased (each lazy init timed on its own):")
    phases = list(runs["phased"][0]["phases_ms"])
    for p in phases:
        line(p, [r["phases_ms"][p] for r in runs["phased"]])
    line("total", [r["total_ms"] for r in runs["phased"]])
    line("  CPU time of that total (process_time)", [r["cpu_total_ms"] for r in runs["phased"]])
    w(" packages first imported by each step (modules loaded), phased sample 1:")
    for p, pkgs in runs["phased"][0]["new_packages_by_step"].items():
        if pkgs:
            listed = ", ".join(f"{k} {v}" for k, v in list(pkgs.items())[:7])
            w(f"  {p:44} {sum(pkgs.values()):4}: {listed}")

    it = cold["importtime"]
    w("")
    w("IMPORT COSTS (python -X importtime, one run; inflated by the tracing itself)")
    w(
        "  per phase: "
        + ", ".join(
            f"{p} {v:.0f} ms"
            for p, v in it["phase_totals_ms"].items()
            if p in ("imports", "first_turn", "second_turn")
        )
    )
    w(f"  {'package':22} {'phase':11} {'cum ms':>8}  imported by")
    for g in it["top_packages"][:15]:
        w(f"  {g['package']:22} {g['phase']:11} {g['cum_ms']:8.0f}  {', '.join(g['imported_by'])}")
    w("  what the heaviest pull in (cumulative ms):")
    for g in it["top_packages"][:4]:
        deps = ", ".join(f"{k} {v:.0f}" for k, v in g["pulls_in"].items())
        w(f"    {g['package']:20} -> {deps}")
    w("  self time by package (who owns the cost, imports + first turn), ms:")
    owned = list(it["self_time_by_package_ms"].items())[:16]
    for i in range(0, len(owned), 4):
        w("    " + "  ".join(f"{p:>18} {v:5.0f}" for p, v in owned[i : i + 4]))

    ws = results["warm_server"]
    t = ws["turns"]
    w("")
    w(f"WARM KNOWLEDGE TURN, server side (lambda_handler in process, n={t['n']}), ms")
    w(
        f"  (conversations table: {ws['conversations_table_items_at_start']} items at start; "
        "finished conversations are deleted, see Purger)"
    )
    w(
        f"  p50 {t['p50']:.1f}  p95 {t['p95']:.1f}  p99 {t['p99']:.1f}  mean {t['mean']:.1f}  "
        f"min {t['min']:.1f}  max {t['max']:.1f}"
    )
    g = ws["gc"]
    w(
        f"  cyclic GC during the timed turns: {g['ms_per_turn']:.2f} ms/turn ("
        + ", ".join(
            f"{k}: {v['collections']}x {v['total_ms']:.0f} ms"
            for k, v in g["by_generation"].items()
        )
        + f"; {g['tracked_objects_after']} tracked objects)"
    )
    w("  components called directly (p50 ms):")
    for k, v in ws["components"].items():
        w(f"    {k:52} {v['p50']:7.2f}")
    prof = ws["profile"]
    w(
        f"  cProfile over {prof['turns']} turns (ms per turn, inflated by profiling; "
        f"profiled wall {prof['wall_ms_per_turn_profiled']:.1f} ms/turn):"
    )
    for r in prof["rows"]:
        if r["calls_per_turn"]:
            w(f"    {r['what']:58} {r['ms_per_turn']:7.2f}  ({r['calls_per_turn']:.1f} calls)")
        else:
            w(f"    {r['what']:58} {'-':>7}  (not called)")
    w("  top self time:")
    for r in prof["top_self_time"][:8]:
        w(f"    {r['where']:58} {r['ms_per_turn']:7.2f}")

    h = results["warm_http"]["turns"]
    w("")
    w(f"WARM KNOWLEDGE TURN over HTTP (CopilotClient.send -> functions-framework, n={h['n']}), ms")
    w(f"  p50 {h['p50']:.1f}  p95 {h['p95']:.1f}  p99 {h['p99']:.1f}  mean {h['mean']:.1f}")

    tg = results["targets"]
    w("")
    w("TARGETS")
    w(
        f"  cold start (imports + init + first knowledge turn) < {TARGET_COLD_MS:.0f} ms: "
        f"median {tg['cold_median_ms']:.0f}, max {tg['cold_max_ms']:.0f} -> "
        f"{'MET' if tg['cold_met'] else 'NOT MET'} (CPU time median {tg['cold_cpu_median_ms']:.0f})"
    )
    w(
        f"  warm knowledge turn p50 server side < {TARGET_WARM_P50_MS:.0f} ms: "
        f"{tg['warm_p50_ms']:.1f} -> {'MET' if tg['warm_met'] else 'NOT MET'}"
    )
    w(f"\nbenchmark wall time: {results['bench_wall_s']:.0f} s")
    w(
        "load average (1/5/15 min): "
        + "; ".join(f"{k} {v}" for k, v in results["loadavg"].items())
        + " (other work on the machine skews the figures: compare with min)"
    )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=5, help="cold starts per kind (default 5)")
    parser.add_argument("--turns", type=int, default=200, help="warm turns (default 200)")
    parser.add_argument("--json", type=Path, help="write the results to this JSON file")
    parser.add_argument(
        "--no-rate-limits",
        dest="rate_limits",
        action="store_false",
        help="turn the chat API's rate limits off (default: on, as deployed, never refusing)",
    )
    args = parser.parse_args(argv)
    if args.samples < 1 or args.turns < 1:
        parser.error("--samples and --turns must be at least 1")

    # As on Lambda, the root logger has a handler before the function is imported, so a
    # library's logging.basicConfig(level=INFO) (wordllama calls one on import) is a no-op.
    logging.basicConfig(level=logging.WARNING)
    t_bench = time.perf_counter()
    load: dict[str, str] = {"start": loadavg()}
    results: dict[str, Any] = {
        "loadavg": load,
        "machine": machine(),
        "args": {"samples": args.samples, "turns": args.turns, "rate_limits": args.rate_limits},
        "questions": QUESTIONS,
    }
    with tempfile.TemporaryDirectory(prefix="copilot-bench-") as tmp:
        stack, client, copilot = start_stack(Path(tmp), args.rate_limits)
        try:
            env = {
                **os.environ,
                **stack.config.env(),
                "AWS_LAMBDA_FUNCTION_NAME": "copilot-bench-chat",
            }
            purger = Purger(stack.client("dynamodb"))
            print(f"cold start: {args.samples} samples per kind ...", flush=True)
            results["cold_start"] = cold_starts(
                client, copilot.copilot_id, env, args.samples, Path(tmp), purger
            )
            load["after_cold_start"] = loadavg()
            print(f"warm, server side: {args.turns} turns ...", flush=True)
            results["warm_server"] = warm_server_side(
                stack.config.env(), copilot.copilot_id, args.turns, purger
            )
            load["after_warm_server"] = loadavg()
            print(f"warm, over HTTP: {args.turns} turns ...", flush=True)
            try:
                results["warm_http"] = warm_http(client, copilot.copilot_id, args.turns, purger)
            except Exception:
                log = Path(tmp) / "logs" / "chat.log"
                if log.exists():
                    print("--- chat function log (tail) ---", file=sys.stderr)
                    print(log.read_text(errors="replace")[-4000:], file=sys.stderr)
                raise
            results["conversations_table_items_at_end"] = purger.item_count()
            load["after_warm_http"] = loadavg()
        finally:
            stack.stop()

    knowledge = results["cold_start"]["runs"]["knowledge"]
    cold_totals = [r["total_ms"] for r in knowledge]
    warm_p50 = results["warm_server"]["turns"]["p50"]
    results["targets"] = {
        "cold_target_ms": TARGET_COLD_MS,
        "cold_median_ms": statistics.median(cold_totals),
        "cold_max_ms": max(cold_totals),
        "cold_met": statistics.median(cold_totals) < TARGET_COLD_MS,
        "cold_met_every_sample": max(cold_totals) < TARGET_COLD_MS,
        "cold_cpu_median_ms": statistics.median(r["cpu_total_ms"] for r in knowledge),
        "warm_target_p50_ms": TARGET_WARM_P50_MS,
        "warm_p50_ms": warm_p50,
        "warm_met": warm_p50 < TARGET_WARM_P50_MS,
    }
    results["bench_wall_s"] = time.perf_counter() - t_bench
    print()
    print(render(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
