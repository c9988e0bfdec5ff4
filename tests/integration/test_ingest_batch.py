"""Batched indexing through the real adapters (moto server S3 + DynamoDB, Chroma server): a
queue batch's files are read, recorded, embedded and written together, each ends with its own
outcome, and the happy path costs a small, constant number of storage round trips per file."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from copilot.bootstrap import Container
from copilot.config import Settings
from copilot.ingest.service import ObjectEvent

pytestmark = pytest.mark.integration


def page(n: int, price: int | None = None) -> bytes:
    return (
        f"# Part {n}\n\n## Price\n\nPart number {n} costs {price or 10 + n} dollars.\n\n"
        f"## Fit\n\nIt fits frame size {n % 7} and wheel size {n % 5}."
    ).encode()


def count_requests(container: Container) -> Counter[str]:
    """Storage round trips of the container's S3 and DynamoDB clients and its Chroma index,
    counted as they are sent."""
    seen: Counter[str] = Counter()
    for service in ("s3", "dynamodb"):
        client = container._client(service)

        def counted(service: str = service, **_: Any) -> None:
            seen[service] += 1

        client.meta.events.register("before-send", counted)
    http = container.index._http  # type: ignore[attr-defined]
    original = http.request

    def request(*args: Any, **kwargs: Any) -> Any:
        seen["chroma"] += 1
        return original(*args, **kwargs)

    http.request = request
    return seen


def test_a_batch_indexes_its_files_together_and_each_ends_with_its_outcome(
    env: tuple[Container, str, Any], settings: Settings
) -> None:
    container, copilot_id, s3 = env
    bucket = settings.bucket

    def event(name: str, created: bool = True) -> ObjectEvent:
        return ObjectEvent(bucket=bucket, key=f"{copilot_id}/{name}", created=created)

    # Before the batch: one file indexed (then edited), one indexed (then removed).
    for name, body in [("edited.md", page(100, 5)), ("removed.md", page(101))]:
        s3.put_object(Bucket=bucket, Key=f"{copilot_id}/{name}", Body=body)
        assert container.ingest.handle(event(name)).status == "indexed"
    s3.put_object(Bucket=bucket, Key=f"{copilot_id}/edited.md", Body=page(100, 7))
    s3.delete_object(Bucket=bucket, Key=f"{copilot_id}/removed.md")
    for n in range(12):
        s3.put_object(Bucket=bucket, Key=f"{copilot_id}/part-{n}.md", Body=page(n))
    s3.put_object(Bucket=bucket, Key=f"{copilot_id}/broken.pdf", Body=b"%PDF-1.7\nnot a pdf")

    events = [
        *(event(f"part-{n}.md") for n in range(12)),
        event("part-3.md"),  # delivered twice in one batch
        event("broken.pdf"),
        event("edited.md"),
        event("removed.md", created=False),
        event("never-uploaded.md"),
        ObjectEvent(bucket=bucket, key="no-such-copilot/x.md", created=True),
    ]
    results = container.ingest.handle_batch(events)

    outcome = {e.key.split("/", 1)[1]: r for e, r in zip(events, results, strict=True)}
    assert all(not isinstance(r, Exception) for r in results), results
    assert {n: outcome[f"part-{n}.md"].status for n in range(12)} == dict.fromkeys(  # type: ignore[union-attr]
        range(12), "indexed"
    )
    assert outcome["broken.pdf"].status == "failed"  # type: ignore[union-attr]
    assert "PDF" in (outcome["broken.pdf"].reason or "")  # type: ignore[union-attr]
    assert outcome["edited.md"].status == "indexed"  # type: ignore[union-attr]
    assert outcome["removed.md"].status == "deleted"  # type: ignore[union-attr]
    assert outcome["never-uploaded.md"].status == "ignored"  # type: ignore[union-attr]
    assert outcome["x.md"].status == "ignored"  # type: ignore[union-attr]

    statuses = {s.doc_key: s for s in container.documents.list(copilot_id)}
    assert statuses["broken.pdf"].status == "failed" and statuses["broken.pdf"].reason
    assert "removed.md" not in statuses and "never-uploaded.md" not in statuses
    assert all(statuses[f"part-{n}.md"].status == "indexed" for n in range(12))
    # Every indexed version once in the index, nothing of the edited file's old version.
    expected = sum(s.chunk_count for s in statuses.values() if s.status == "indexed")
    assert container.index.count(copilot_id) == expected
    retrieval = container.answerer.retrieve(copilot_id, "how much does part number 100 cost")
    texts = {c.chunk.text for c in retrieval.candidates if c.chunk.doc_key == "edited.md"}
    assert any("7 dollars" in t for t in texts) and not any("5 dollars" in t for t in texts)
    # The lexical side knows the new files and the edit at once, and forgot the removed one.
    lexical = container.lexical_reader.get(copilot_id)
    assert lexical is not None
    assert {h.chunk.doc_key for h in lexical.search("part number 7", 3)} >= {"part-7.md"}
    assert lexical.df("101") == 0


def test_new_files_cost_a_few_storage_round_trips_each(
    env: tuple[Container, str, Any], settings: Settings
) -> None:
    """The happy path of a batch of new files: reading each file and checking it did not
    change meanwhile (2 S3 requests a file); the statuses, the vectors and the lexical
    segment in a constant number of requests per batch."""
    container, copilot_id, s3 = env
    files = 20
    for n in range(files):
        s3.put_object(Bucket=settings.bucket, Key=f"{copilot_id}/p{n}.md", Body=page(n))
    events = [
        ObjectEvent(bucket=settings.bucket, key=f"{copilot_id}/p{n}.md", created=True)
        for n in range(files)
    ]
    container.ingest.handle_batch(events[:1])  # clients, the collection, the model: warm
    seen = count_requests(container)

    results = container.ingest.handle_batch(events[1:])

    assert [getattr(r, "status", r) for r in results] == ["indexed"] * (files - 1)
    assert seen["s3"] == 2 * (files - 1) + 1  # each file read and checked; one segment
    assert seen["dynamodb"] <= 6  # copilot, statuses read, pending, indexed, lexical manifest
    assert seen["chroma"] <= 2  # one upsert (and at most one collection lookup)
