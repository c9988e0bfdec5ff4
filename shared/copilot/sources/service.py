"""Knowledge sources beyond uploads: websites (crawled) and knowledge bases (synced).

Both write into the copilot's prefix in the bucket, so the upload pipeline indexes them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from copilot.admin.lookup import require_copilot
from copilot.admin.models import Copilot, WebsiteSource
from copilot.errors import BadRequestError, CopilotError
from copilot.ports import BlobStore, CopilotRegistry, StateStore

if TYPE_CHECKING:
    from copilot.sources.kb.base import KbSource
    from copilot.sources.kb.sync import KbSyncReport
    from copilot.sources.websites.crawler import SiteSyncReport

log = logging.getLogger(__name__)


def kb_source_from_settings(name: str) -> KbSource:
    if name == "servicenow":
        from copilot.sources.kb.servicenow import ServiceNowKnowledge, ServiceNowSettings

        return ServiceNowKnowledge.from_settings(ServiceNowSettings())
    if name == "salesforce":
        from copilot.sources.kb.salesforce import SalesforceKnowledge, SalesforceSettings

        return SalesforceKnowledge.from_settings(SalesforceSettings())
    raise BadRequestError(f"unknown knowledge base '{name}' (servicenow or salesforce)")


class SourcesService:
    def __init__(
        self,
        copilots: CopilotRegistry,
        blobs: BlobStore,
        state: StateStore,
        kb_source: Callable[[str], KbSource] = kb_source_from_settings,
    ) -> None:
        self._copilots = copilots
        self._blobs = blobs
        self._state = state
        self._kb_source = kb_source

    def crawl(self, copilot_id: str, website: WebsiteSource) -> SiteSyncReport:
        from copilot.sources.websites.crawler import sync_site
        from copilot.sources.websites.models import CrawlOptions

        require_copilot(self._copilots, copilot_id)
        options = CrawlOptions(
            start_urls=website.start_urls,
            max_depth=website.max_depth,
            max_pages=website.max_pages,
        )
        return sync_site(copilot_id, options, self._blobs, self._state)

    def sync_kb(self, copilot_id: str, name: str, *, full: bool = False) -> KbSyncReport:
        from copilot.sources.kb.sync import sync_knowledge_base

        require_copilot(self._copilots, copilot_id)
        return sync_knowledge_base(
            copilot_id, self._kb_source(name), self._blobs, self._state, full=full
        )

    def refresh(self, copilot_id: str | None = None) -> list[str]:
        """Re-crawl every website and sync every knowledge base of one copilot (or of all).

        One failing source never stops the others; each outcome is one line of the summary.
        """
        copilots = (
            [require_copilot(self._copilots, copilot_id)] if copilot_id else self._copilots.list()
        )
        lines: list[str] = []
        for copilot in copilots:
            for website in copilot.websites:
                lines.append(
                    self._run(copilot, website.start_urls[0], self._crawl_job(copilot, website))
                )
            for name in copilot.knowledge_bases:
                lines.append(self._run(copilot, name, self._sync_job(copilot, name)))
        return lines

    def _crawl_job(self, copilot: Copilot, website: WebsiteSource) -> Callable[[], str]:
        return lambda: self.crawl(copilot.copilot_id, website).summary()

    def _sync_job(self, copilot: Copilot, name: str) -> Callable[[], str]:
        return lambda: _kb_summary(self.sync_kb(copilot.copilot_id, name))

    @staticmethod
    def _run(copilot: Copilot, what: str, job: Callable[[], str]) -> str:
        try:
            return f"{copilot.name} ({copilot.copilot_id}): {job()}"
        except CopilotError as e:
            log.error("refresh of %s for %s failed: %s", what, copilot.copilot_id, e.message)
            return f"{copilot.name} ({copilot.copilot_id}): {what}: FAILED: {e.message}"


def _kb_summary(report: KbSyncReport) -> str:
    line = (
        f"{report.source}: {report.added} added, {report.updated} updated, "
        f"{report.unchanged} unchanged, {report.removed} removed, {report.failed} failed"
    )
    return line + "".join(f"\n  failed: {f.article_id}: {f.reason}" for f in report.failures)
