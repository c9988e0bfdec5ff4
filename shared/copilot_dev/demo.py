"""Seeding a copilot with a knowledge folder through the real upload pipeline."""

from __future__ import annotations

import json
import mimetypes
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from copilot.admin.models import Copilot
from copilot.ingest.models import DocumentStatus
from copilot_dev.client import CopilotClient


def upload_files(
    s3: Any,
    bucket: str,
    copilot_id: str,
    files: Iterable[Path],
    base: Path,
    on_upload: Callable[[str], None] | None = None,
) -> dict[str, str]:
    """Upload files under the copilot's prefix; returns each document key's new version."""
    versions: dict[str, str] = {}
    for path in files:
        doc_key = path.relative_to(base).as_posix() if path.is_relative_to(base) else path.name
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        response = s3.put_object(
            Bucket=bucket,
            Key=f"{copilot_id}/{doc_key}",
            Body=path.read_bytes(),
            ContentType=content_type,
        )
        versions[doc_key] = response.get("VersionId") or response["ETag"].strip('"')
        if on_upload:
            on_upload(doc_key)
    return versions


def wait_indexed(
    client: CopilotClient,
    copilot_id: str,
    versions: dict[str, str],
    timeout: float = 300,
    poll: float = 0.2,
    on_progress: Callable[[int], None] | None = None,
) -> list[DocumentStatus]:
    """Wait until each document's given version was indexed or failed; returns the statuses."""
    deadline = time.time() + timeout
    while True:
        docs = {d.doc_key: d for d in client.documents(copilot_id)}
        done = [
            docs[k]
            for k, version in versions.items()
            if k in docs and docs[k].attempted_version == version
        ]
        if on_progress:
            on_progress(len(done))
        if len(done) == len(versions):
            return sorted(done, key=lambda d: d.doc_key)
        if time.time() > deadline:
            missing = sorted(set(versions) - {d.doc_key for d in done})
            raise TimeoutError(f"not indexed after {timeout:.0f} s: {missing[:10]}")
        time.sleep(poll)


def knowledge_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def demo_origins(chat_url: str, extra: Iterable[str] = ()) -> list[str]:
    """The pages of the local stack that may run the demo copilot's chat in a browser: the chat
    function's own origin, by IP and by name (a page it serves), and ``extra`` (e.g. the demo
    site's origin)."""
    parts = urlsplit(chat_url)
    port = f":{parts.port}" if parts.port else ""
    own = [f"{parts.scheme}://127.0.0.1{port}", f"{parts.scheme}://localhost{port}"]
    return list(dict.fromkeys([*own, *extra]))


def seed_demo(
    client: CopilotClient,
    s3: Any,
    bucket: str,
    demo_dir: Path,
    origins: Iterable[str] = (),
) -> tuple[Copilot, list[DocumentStatus]]:
    """The demo copilot, its knowledge indexed; browsers may call it from the local stack's
    pages (demo_origins, plus ``origins``)."""
    spec = json.loads((demo_dir / "copilot.json").read_text())
    spec["allowed_origins"] = demo_origins(client.base_url, origins)
    copilot = client.create_copilot(spec)
    folder = demo_dir / "knowledge"
    versions = upload_files(s3, bucket, copilot.copilot_id, knowledge_files(folder), folder)
    return copilot, wait_indexed(client, copilot.copilot_id, versions)
