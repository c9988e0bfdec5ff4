"""Mirror a knowledge hub's published articles into a copilot's knowledge files.

Each article becomes ``<copilot_id>/kb/<source>/<article id>.html`` (content type text/html,
metadata ``source-url``/``title``/``updated``); writing it triggers indexing, deleting it removes
the article from the index. An incremental run asks the hub for changes at or after the
watermark kept in the StateStore under ``kb:<source>`` and advances it only when every change
was applied, so a failed run loses nothing: the next one reads the same changes again. Articles
whose file already holds the same bytes (same MD5 as the object's ETag) are not rewritten, so
re-read articles cost no re-indexing.

A full run lists every published article, rewrites what differs and removes the files of
articles that are no longer published (or no longer exist).
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
from datetime import UTC, datetime
from email.header import Header
from urllib.parse import quote

from pydantic import BaseModel, Field

from copilot.errors import BadRequestError
from copilot.ingest.models import SOURCE_URL_META
from copilot.ports import BlobStore, StateStore
from copilot.schema import utcnow
from copilot.sources.kb.base import Article, KbSource, utc
from copilot.sources.mirror import MirroredDocument, PrefixMirror

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/html"
TITLE_META = "title"
UPDATED_META = "updated"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_TITLE_META = 300  # S3 allows 2 KB of user metadata in all


class KbSyncFailure(BaseModel):
    article_id: str
    key: str | None = None
    reason: str
    transient: bool = Field(description="The next run retries it (the watermark stayed)")


class KbSyncReport(BaseModel):
    copilot_id: str
    source: str
    full: bool
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    failed: int = 0
    failures: list[KbSyncFailure] = Field(default_factory=list)
    written: list[str] = Field(default_factory=list, description="Keys added or updated")
    deleted: list[str] = Field(default_factory=list, description="Keys removed")
    watermark_before: datetime | None = None
    watermark_after: datetime | None = None

    @property
    def watermark_advanced(self) -> bool:
        return self.watermark_after != self.watermark_before


def state_name(source: KbSource) -> str:
    return f"kb:{source.name}"


def source_prefix(copilot_id: str, source: KbSource) -> str:
    return f"{copilot_id}/kb/{source.name}/"


def article_key(copilot_id: str, source: KbSource, article_id: str) -> str | None:
    stem = _UNSAFE.sub("_", article_id.strip()).strip("._")
    return f"{source_prefix(copilot_id, source)}{stem}.html" if stem else None


def render_article(article: Article) -> bytes:
    """The HTML document ingest parses: the title twice (``<title>`` and ``<h1>``), then the
    hub's own body HTML. The canonical link makes a changed citation URL a changed file."""
    title = html.escape(article.title)
    url = html.escape(_ascii_url(article.url), quote=True)
    return (
        '<html><head><meta charset="utf-8">'
        f'<title>{title}</title><link rel="canonical" href="{url}"></head>'
        f"<body><h1>{title}</h1>{article.body_html}</body></html>\n"
    ).encode()


def article_metadata(article: Article) -> dict[str, str]:
    """S3 user metadata travels in HTTP headers and must be US-ASCII: non-ASCII titles are
    sent RFC 2047-encoded (S3's own convention), URLs percent-encoded."""
    title = article.title[:_MAX_TITLE_META]
    if not title.isascii():
        title = Header(title, "utf-8").encode(maxlinelen=10_000)
    return {
        SOURCE_URL_META: _ascii_url(article.url),
        TITLE_META: " ".join(title.split()),
        UPDATED_META: _iso(article.updated),
    }


def sync_knowledge_base(
    copilot_id: str,
    source: KbSource,
    blobs: BlobStore,
    state: StateStore,
    *,
    full: bool = False,
    allow_empty: bool = False,
) -> KbSyncReport:
    """Apply the hub's changes since the last run (all published articles when ``full``).

    Hub failures raise (UnavailableError, ForbiddenError, BadRequestError) before anything is
    written. Storage failures on single files are reported in ``failures`` and keep the
    watermark where it was. A full run that finds no published article at all refuses to empty
    the folder unless ``allow_empty`` (a permission change on the hub can hide every article).
    """
    if not copilot_id or "/" in copilot_id:
        raise BadRequestError(f"'{copilot_id}' is not a copilot id")
    name = state_name(source)
    saved = state.get_state(copilot_id, name) or {}
    before = _parse_iso(saved.get("watermark"))
    report = KbSyncReport(
        copilot_id=copilot_id,
        source=source.name,
        full=full,
        watermark_before=before,
        watermark_after=before,
    )

    changes = source.changes(None if full else before)
    prefix = source_prefix(copilot_id, source)
    mirror = PrefixMirror.open(blobs, prefix)  # fingerprints: the ETag, the body's MD5

    current: dict[str, Article] = {}
    for article in sorted(changes.published, key=lambda a: a.updated):
        current[article.article_id] = article  # the latest version wins
    published_keys: set[str] = set()
    for article in current.values():
        key = article_key(copilot_id, source, article.article_id)
        if key is None:
            _fail(report, article.article_id, None, "the article has no usable id", False)
            continue
        published_keys.add(key)
        body = render_article(article)
        mirror.write(
            MirroredDocument(
                name=article.article_id,
                key=key,
                body=body,
                content_type=CONTENT_TYPE,
                metadata=article_metadata(article),
                fingerprint=hashlib.md5(body).hexdigest(),
            )
        )

    if full:
        gone = sorted(mirror.stored - published_keys)
        if gone and not current and not allow_empty:
            _fail(
                report,
                "*",
                None,
                f"the hub returned no published article; {len(gone)} synced articles were kept. "
                "If the knowledge base really is empty, run the full sync with allow_empty",
                False,
            )
            gone = []
        doomed = [(k, k.removeprefix(prefix).removesuffix(".html")) for k in gone]
    else:
        doomed = []
        for retirement in changes.retired:
            key = article_key(copilot_id, source, retirement.article_id)
            if key and key not in published_keys:
                doomed.append((key, retirement.article_id))
    mirror.remove(doomed)
    for failure in mirror.failures:
        _fail(report, failure.name, failure.key, failure.reason, failure.transient)
    report.written = mirror.added + mirror.updated
    report.deleted = mirror.removed
    report.added, report.updated = len(mirror.added), len(mirror.updated)
    report.removed, report.unchanged = len(mirror.removed), len(mirror.unchanged)

    if any(f.transient for f in report.failures):
        log.warning(
            "kb sync %s/%s: %d changes could not be stored; the watermark stays at %s",
            copilot_id,
            source.name,
            sum(f.transient for f in report.failures),
            before,
        )
        return report
    after = before
    if changes.high_water is not None:
        high = utc(changes.high_water)
        after = high if after is None or high > after else after
    state.put_state(
        copilot_id,
        name,
        {
            **saved,
            "watermark": _iso(after) if after else None,
            "synced_at": _iso(utcnow()),
            **({"full_synced_at": _iso(utcnow())} if full else {}),
        },
    )
    report.watermark_after = after
    log.info(
        "kb sync %s/%s%s: +%d ~%d -%d =%d !%d",
        copilot_id,
        source.name,
        " (full)" if full else "",
        report.added,
        report.updated,
        report.removed,
        report.unchanged,
        report.failed,
    )
    return report


def _fail(
    report: KbSyncReport, article_id: str, key: str | None, reason: str, transient: bool
) -> None:
    report.failures.append(
        KbSyncFailure(article_id=article_id, key=key, reason=reason, transient=transient)
    )
    report.failed += 1


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        log.warning("ignoring an unreadable kb watermark %r", value)
        return None


def _ascii_url(url: str) -> str:
    return quote(url, safe=":/?#[]@!$&'()*+,;=%~")
