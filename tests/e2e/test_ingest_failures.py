"""Every object that lands in the knowledge bucket ends with a document record, on the local
stack (moto server, Chroma, functions-framework, the queue pumps): indexed, or failed with a
reason a person can act on; what failed can be retried from the CLI once it is fixed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote_plus

import pytest

from copilot.adapters.chroma import ChromaKnowledgeIndex
from copilot.ingest.models import DocumentStatus
from copilot_dev.client import CopilotClient
from copilot_dev.localstack import LocalStack, StackConfig
from tests.conftest import REPO_ROOT, wait_for

pytestmark = pytest.mark.e2e

COPILOT_BIN = Path(sys.executable).parent / "copilot"
LIMIT = 2000  # bytes: COPILOT_MAX_UPLOAD_BYTES of this stack

INDEXING_SECONDS = 90  # retries back off: a document may take a while to settle


def records(client: CopilotClient, copilot_id: str) -> dict[str, DocumentStatus]:
    return {d.doc_key: d for d in client.documents(copilot_id)}


def settled(client: CopilotClient, copilot_id: str, keys: set[str]) -> dict[str, DocumentStatus]:
    def check() -> dict[str, DocumentStatus] | None:
        now = records(client, copilot_id)
        done = keys <= now.keys() and all(now[k].status != "pending" for k in keys)
        return now if done else None

    return wait_for(check, INDEXING_SECONDS, f"records of {sorted(keys)}")


def test_every_upload_ends_with_a_record_and_failed_ones_can_be_retried(tmp_path: Path) -> None:
    config = StackConfig.with_free_ports(REPO_ROOT, tmp_path / "stack")
    config.visibility_timeout = 1
    config.extra_env = {"COPILOT_MAX_UPLOAD_BYTES": str(LIMIT)}
    with LocalStack(config) as stack:
        client = stack.copilot_client()
        copilot_id = client.create_copilot({"name": "Failures bot"}).copilot_id
        s3 = stack.client("s3")
        files = {
            "big.md": b"# Big\n\n" + b"word " * LIMIT,
            "manual.exe": b"MZ\x90\x00",
            "empty.md": b"",
            "broken.pdf": b"%PDF-1.7\nnot really a pdf",
            "good.md": b"# Hours\n\nWe open at nine.",
        }
        for name, body in files.items():
            s3.put_object(Bucket=config.bucket, Key=f"{copilot_id}/{name}", Body=body)
        # Outside any copilot's prefix: nothing to record them under (ignored, logged).
        s3.put_object(Bucket=config.bucket, Key="stray.md", Body=b"# Stray\n\ntext")
        s3.put_object(Bucket=config.bucket, Key="nobody/faq.md", Body=b"# FAQ\n\ntext")

        docs = settled(client, copilot_id, set(files))
        assert {k: d.status for k, d in docs.items()} == {
            "big.md": "failed",
            "manual.exe": "failed",
            "empty.md": "failed",
            "broken.pdf": "failed",
            "good.md": "indexed",
        }
        big = docs["big.md"].reason or ""
        assert "over the" in big and "split the file" in big and "COPILOT_MAX_UPLOAD_BYTES" in big
        assert "unsupported file type '.exe'" in (docs["manual.exe"].reason or "")
        assert "the file is empty" in (docs["empty.md"].reason or "")
        assert docs["broken.pdf"].reason
        assert stack.dead_letters == []  # permanent failures are acknowledged, never retried

        # The index is down: the upload is retried with its cause on the record, then
        # dead-lettered, and the dead-letter consumer records it as failed.
        stack.kill("chroma")
        s3.put_object(Bucket=config.bucket, Key=f"{copilot_id}/faq.md", Body=b"# FAQ\n\nHi.")

        def faq(ready: Callable[[DocumentStatus], bool]) -> DocumentStatus | None:
            d = records(client, copilot_id).get("faq.md")
            return d if d is not None and ready(d) else None

        retrying = wait_for(
            lambda: faq(lambda d: d.reason is not None), INDEXING_SECONDS, "the retry reason"
        )
        assert retrying.status == "pending"
        assert retrying.reason == "the knowledge index is unavailable; retrying"
        failed = wait_for(
            lambda: faq(lambda d: d.status == "failed"),
            INDEXING_SECONDS,
            "the dead letter to be recorded",
        )
        assert "given up after repeated failures" in (failed.reason or "")
        assert "the knowledge index is unavailable" in (failed.reason or "")
        assert "copilot docs retry" in (failed.reason or "")
        # The pump notes the message after the ingest function answered (the record is
        # written during that call): wait for the note, not just the record.
        dead = wait_for(
            lambda: list(stack.dead_letters), INDEXING_SECONDS, "the pump to note the dead letter"
        )
        dead_keys = [
            unquote_plus(r["s3"]["object"]["key"])
            for m in dead
            for r in json.loads(m["Body"])["Records"]
        ]
        assert dead_keys == [f"{copilot_id}/faq.md"]

        # Fixed: `copilot docs retry` queues it again and it is indexed.
        stack.restart("chroma")
        env = {k: v for k, v in os.environ.items() if not k.startswith("COPILOT_")}
        cli = subprocess.run(
            [
                str(COPILOT_BIN),
                "docs",
                "retry",
                "--copilot",
                copilot_id,
                "faq.md",
                "--data-dir",
                str(config.data_dir),
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO_ROOT,
            timeout=60,
            check=False,
        )
        assert cli.returncode == 0, cli.stderr + cli.stdout
        assert f"queued   {copilot_id}/faq.md" in cli.stdout
        docs = settled(client, copilot_id, {"faq.md"})
        assert docs["faq.md"].status == "indexed" and docs["faq.md"].reason is None

        # Retrying everything that failed: what is still wrong fails again, with its reason.
        before = records(client, copilot_id)
        result = client.retry_documents(copilot_id)
        assert sorted(result.queued) == ["big.md", "broken.pdf", "empty.md", "manual.exe"]
        docs = settled(client, copilot_id, set(result.queued))
        for key in result.queued:
            assert docs[key].status == "failed" and docs[key].reason == before[key].reason
            assert docs[key].updated_at > before[key].updated_at  # attempted again
        assert "COPILOT_MAX_UPLOAD_BYTES" in (docs["big.md"].reason or "")


def test_a_bulk_upload_loses_nothing_and_a_racing_edit_ends_on_its_newest_version(
    tmp_path: Path,
) -> None:
    """Hundreds of files at once, a few of them corrupt, one edited again and again while the
    batches run: every good file indexed once, every bad one failed with its reason, the
    edited one on its newest version, the index holding exactly the live chunks."""
    config = StackConfig.with_free_ports(REPO_ROOT, tmp_path / "stack")
    with LocalStack(config) as stack:
        client = stack.copilot_client()
        copilot_id = client.create_copilot({"name": "Bulk bot"}).copilot_id
        s3 = stack.client("s3")
        good = {
            f"faq/q{n:03d}.md": f"# Question {n}\n\nAnswer number {n} is {n * 7}.".encode()
            for n in range(240)
        }
        bad = {f"broken-{n}.pdf": b"%PDF-1.7\nnot really a pdf" for n in range(3)}
        for name, body in [*good.items(), *bad.items()]:
            s3.put_object(Bucket=config.bucket, Key=f"{copilot_id}/{name}", Body=body)
            if name.endswith("0.md"):  # the edited file changes while the others index
                edit = f"# Prices\n\nA tune-up costs {len(name) + int(name[5:8])} dollars."
                s3.put_object(Bucket=config.bucket, Key=f"{copilot_id}/prices.md", Body=edit)
        newest = "# Prices\n\nA tune-up costs 999 dollars."
        s3.put_object(Bucket=config.bucket, Key=f"{copilot_id}/prices.md", Body=newest)
        keys = {*good, *bad, "prices.md"}

        now = settled(client, copilot_id, keys)

        assert {k for k in good if now[k].status != "indexed"} == set()
        for name in bad:
            assert now[name].status == "failed" and "PDF" in (now[name].reason or "")
        etag = s3.head_object(Bucket=config.bucket, Key=f"{copilot_id}/prices.md")["ETag"]
        assert now["prices.md"].status == "indexed"
        assert now["prices.md"].version == etag.strip('"')

        index = ChromaKnowledgeIndex(f"http://127.0.0.1:{config.chroma_port}")

        def exactly_the_live_chunks() -> bool | None:
            live = sum(d.chunk_count for d in records(client, copilot_id).values())
            return True if index.count(copilot_id) == live else None

        wait_for(exactly_the_live_chunks, 30, "the index to hold only live chunks")
        started = client.start(copilot_id)
        reply = client.send(started.conversation_id, started.token, "how much is a tune-up?")
        assert "999" in reply.messages[-1].text
