"""Seeding a copilot with a knowledge folder through the real upload pipeline."""

from __future__ import annotations

import json
import mimetypes
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from copilot.client import CopilotClient
from copilot.models import Copilot, DocumentStatus, DocumentStatusValue


def upload_files(
    s3: Any, bucket: str, copilot_id: str, files: Iterable[Path], base: Path
) -> list[str]:
    keys = []
    for path in files:
        doc_key = path.relative_to(base).as_posix() if path.is_relative_to(base) else path.name
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        s3.put_object(
            Bucket=bucket,
            Key=f"{copilot_id}/{doc_key}",
            Body=path.read_bytes(),
            ContentType=content_type,
        )
        keys.append(doc_key)
    return keys


def wait_indexed(
    client: CopilotClient,
    copilot_id: str,
    doc_keys: Iterable[str],
    timeout: float = 300,
    poll: float = 0.2,
) -> list[DocumentStatus]:
    """Wait until every named document is indexed or failed; returns their statuses."""
    wanted = set(doc_keys)
    deadline = time.time() + timeout
    while True:
        docs = {d.doc_key: d for d in client.documents(copilot_id)}
        done = [
            docs[k] for k in wanted if k in docs and docs[k].status != DocumentStatusValue.PENDING
        ]
        if len(done) == len(wanted):
            return sorted(done, key=lambda d: d.doc_key)
        if time.time() > deadline:
            missing = sorted(wanted - {d.doc_key for d in done})
            raise TimeoutError(f"not indexed after {timeout:.0f} s: {missing[:10]}")
        time.sleep(poll)


def knowledge_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def seed_demo(
    client: CopilotClient, s3: Any, bucket: str, demo_dir: Path
) -> tuple[Copilot, list[DocumentStatus]]:
    spec = json.loads((demo_dir / "copilot.json").read_text())
    copilot = client.create_copilot(spec)
    folder = demo_dir / "knowledge"
    keys = upload_files(s3, bucket, copilot.copilot_id, knowledge_files(folder), folder)
    return copilot, wait_indexed(client, copilot.copilot_id, keys)
