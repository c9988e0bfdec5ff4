"""Shared pieces of bench/ingest.py and its worker: servers, timers around adapters, stats.

Nothing here changes product code: the stage timers are proxies around the real adapters handed
to ``copilot.bootstrap.Container`` as overrides, plus a wrapper around the ``chunk_document``
name that ``copilot.ingest.service`` calls (it runs the same two calls, parse then chunk).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Stage names, in pipeline order, and the adapter calls that make them up.
STAGES = [
    ("registry", "DynamoDB: copilot lookup"),
    ("s3", "S3 (moto): head x2 + get"),
    ("status", "DynamoDB (moto): status get x3 + save x2"),
    ("parse", "parse"),
    ("chunk", "chunk"),
    ("embed", "embed (WordLlama)"),
    ("index_add", "index write: Chroma upsert"),
    ("index_cleanup", "index cleanup: Chroma get (+ delete) of other versions"),
    ("lexical", "lexical index: mark dirty (DynamoDB) + schedule the rebuild (SQS)"),
    ("lexical_rebuild", "lexical index rebuilt in line (no queue): read all chunks, BM25, publish"),
    ("other", "other (service logic, pydantic, untimed)"),
]
CALL_STAGE = {
    "copilots.get": "registry",
    "blobs.head": "s3",
    "blobs.get": "s3",
    "documents.get": "status",
    "documents.save": "status",
    "documents.delete": "status",
    "embedder.embed_documents": "embed",
    "index.add_chunks": "index_add",
    "index.delete_document": "index_cleanup",
    # Work in progress in the product (hybrid retrieval): a BM25 snapshot per copilot, marked
    # dirty after each change and rebuilt later (a delayed queue message) or at once (no queue).
    "lexical_store.mark_dirty": "lexical",
    "ingest_queue.send_many": "lexical",
    "index.all_chunks": "lexical_rebuild",
    "documents.active_versions": "lexical_rebuild",
    "lexical_store.begin_rebuild": "lexical_rebuild",
    "lexical_store.publish": "lexical_rebuild",
}


# --- stage timers --------------------------------------------------------------------------------


class StageClock:
    """Accumulates seconds per call name (thread-safe enough: one worker thread)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] += seconds
        self.calls[name] += 1

    def snapshot(self) -> tuple[dict[str, float], dict[str, int]]:
        return dict(self.seconds), dict(self.calls)

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()


class Timed:
    """Proxy that times every method call of the wrapped adapter under ``prefix.method``."""

    def __init__(self, target: Any, prefix: str, clock: StageClock) -> None:
        self._target = target
        self._prefix = prefix
        self._clock = clock

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value) or name.startswith("_"):
            return value
        label = f"{self._prefix}.{name}"
        clock = self._clock

        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return value(*args, **kwargs)
            finally:
                clock.add(label, time.perf_counter() - t)

        return timed


def instrument_chunking(clock: StageClock) -> None:
    """Time parse and chunk separately where IngestService calls ``chunk_document``."""
    import copilot.ingest.service as ingest_module
    from copilot.ingest.chunking import chunk_parsed
    from copilot.ingest.parsing.registry import parse

    def chunk_document(
        copilot_id: str,
        doc_key: str,
        body: bytes,
        version: str | None,
        *,
        url: str | None = None,
        limits: Any = None,
    ) -> Any:
        t0 = time.perf_counter()
        try:
            document = parse(doc_key, body, limits)
        finally:
            t1 = time.perf_counter()
            clock.add("parse", t1 - t0)
        try:
            return chunk_parsed(copilot_id, doc_key, document, version, url=url)
        finally:
            clock.add("chunk", time.perf_counter() - t1)

    ingest_module.chunk_document = chunk_document


def stage_totals(seconds: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for name, s in seconds.items():
        if name != "lexical.rebuild":
            out[CALL_STAGE.get(name, name)] += s
    if "lexical.rebuild" in seconds:  # the whole in-line rebuild, its calls included
        out["lexical_rebuild"] = seconds["lexical.rebuild"]
    return dict(out)


# --- processes -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_pids(pid: int) -> list[int]:
    """pid and its descendants (from /proc)."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children[int(fields[1])].append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process tree (live processes only)."""
    total = 0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return total / CLK_TCK


class Servers:
    """moto (copilot_dev.localaws) and a Chroma server as subprocesses, on free ports."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.moto_port = free_port()
        self.chroma_port = free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def aws_url(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    @property
    def chroma_url(self) -> str:
        return f"http://127.0.0.1:{self.chroma_port}"

    def env(self) -> dict[str, str]:
        return {
            "COPILOT_AWS_ENDPOINT_URL": self.aws_url,
            "COPILOT_CHROMA_URL": self.chroma_url,
            "COPILOT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def start(self) -> None:
        import requests

        self.data_dir.mkdir(parents=True, exist_ok=True)
        logs = self.data_dir / "logs"
        logs.mkdir(exist_ok=True)
        env = {**os.environ, **self.env()}
        self._spawn(
            "moto",
            [sys.executable, "-m", "copilot_dev.localaws", "--port", str(self.moto_port)],
            env,
        )
        self._spawn(
            "chroma",
            [
                str(BIN / "chroma"),
                "run",
                "--path",
                str(self.data_dir / "chroma"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.chroma_port),
            ],
            env,
        )
        for name, url in (
            ("moto", self.aws_url + "/moto-api/"),
            ("chroma", self.chroma_url + "/api/v2/heartbeat"),
        ):
            deadline = time.time() + 60
            while True:
                if self.procs[name].poll() is not None:
                    raise RuntimeError(f"{name} exited; see {logs / (name + '.log')}")
                try:
                    if requests.get(url, timeout=2).status_code < 500:
                        break
                except requests.RequestException:
                    pass
                if time.time() > deadline:
                    raise TimeoutError(f"{name} did not start")
                time.sleep(0.1)

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        out = open(self.data_dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115
        self.procs[name] = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )

    def cpu(self) -> dict[str, float]:
        return {name: cpu_seconds(p.pid) for name, p in self.procs.items()}

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=8)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


def system_busy_seconds() -> float:
    """CPU seconds all processes of the machine have used since boot (all cores)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return (sum(values) - values[3] - values[4]) / CLK_TCK  # minus idle and iowait


class CpuSampler:
    """CPU time of some process trees, and of the whole machine, around a measured section."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start: dict[str, float] = {}
        self.t0 = 0.0

    def __enter__(self) -> CpuSampler:
        self.start = {n: cpu_seconds(p) for n, p in self.pids.items()}
        self.own0 = time.process_time()
        self.busy0 = system_busy_seconds()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        self.system_busy = system_busy_seconds() - self.busy0
        self.used = {n: cpu_seconds(p) - self.start[n] for n, p in self.pids.items()}
        self.used["bench"] = time.process_time() - self.own0

    def others(self, extra: float = 0.0) -> float:
        """CPU seconds used meanwhile by processes this bench did not start (noise)."""
        return max(0.0, self.system_busy - sum(self.used.values()) - extra)


def background_load(seconds: float = 2.0) -> float:
    """Share of the machine's cores busy while this bench does nothing."""
    busy0, t0 = system_busy_seconds(), time.perf_counter()
    time.sleep(seconds)
    return (system_busy_seconds() - busy0) / ((time.perf_counter() - t0) * (os.cpu_count() or 1))
