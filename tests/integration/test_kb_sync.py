"""Knowledge-base sync from ServiceNow and Salesforce, over real HTTP to the loopback emulators
(and, in one test, to moto's S3 server through the S3 adapter)."""

from __future__ import annotations

import email.header
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import boto3
import pytest

from copilot.adapters.aws.s3 import S3BlobStore
from copilot.errors import BadRequestError, ForbiddenError, UnavailableError
from copilot.sources.kb.base import HttpPolicy
from copilot.sources.kb.salesforce import SalesforceKnowledge, SalesforceSettings
from copilot.sources.kb.servicenow import ServiceNowKnowledge, ServiceNowSettings
from copilot.sources.kb.sync import sync_knowledge_base
from copilot_dev.emulators import TickingClock
from copilot_dev.emulators.salesforce_kb import SalesforceKbEmulator
from copilot_dev.emulators.servicenow_kb import ServiceNowKbEmulator
from copilot_dev.fakes import MemoryBlobStore, MemoryStateStore

pytestmark = pytest.mark.integration

COPILOT = "acme"
FAST = HttpPolicy(timeout=5, retries=0, backoff=0)
SN_PREFIX = f"{COPILOT}/kb/servicenow/"
SF_PREFIX = f"{COPILOT}/kb/salesforce/"


@pytest.fixture
def sn() -> Iterator[ServiceNowKbEmulator]:
    with ServiceNowKbEmulator(clock=TickingClock()) as hub:
        yield hub


@pytest.fixture
def sf() -> Iterator[SalesforceKbEmulator]:
    with SalesforceKbEmulator(clock=TickingClock()) as hub:
        yield hub


@pytest.fixture
def blobs() -> MemoryBlobStore:
    return MemoryBlobStore()


@pytest.fixture
def state() -> MemoryStateStore:
    return MemoryStateStore()


def sn_source(hub: ServiceNowKbEmulator, **options: object) -> ServiceNowKnowledge:
    options.setdefault("policy", FAST)
    options.setdefault("username", hub.username)
    options.setdefault("password", hub.password)
    return ServiceNowKnowledge(hub.url, **options)  # type: ignore[arg-type]


def sf_source(hub: SalesforceKbEmulator, **options: object) -> SalesforceKnowledge:
    options.setdefault("policy", FAST)
    client_secret = options.pop("client_secret", hub.client_secret)
    return SalesforceKnowledge(hub.url, hub.client_id, client_secret, **options)  # type: ignore[arg-type]


def keys(blobs: MemoryBlobStore, prefix: str) -> list[str]:
    return sorted(k for k in blobs.objects if k.startswith(prefix))


def versions(blobs: MemoryBlobStore) -> dict[str, str | None]:
    return {k: o.version for k, o in blobs.objects.items()}


def sn_time(value: str) -> str:
    """ServiceNow's 2024-05-01 09:03:00 -> the watermark's 2024-05-01T09:03:00Z."""
    return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").strftime("%Y-%m-%dT%H:%M:%SZ")


def sf_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- ServiceNow -------------------------------------------------------------------------------


def test_servicenow_first_sync_writes_published_articles_as_html(
    sn: ServiceNowKbEmulator, blobs: MemoryBlobStore, state: MemoryStateStore
) -> None:
    reset = sn.add_article("Reset your password", "<p>Open <b>Settings</b> &gt; Security.</p>")
    vpn = sn.add_article("Set up the VPN", "<p>Install the client.</p>")
    sn.add_article("Unreleased feature", "<p>draft</p>", workflow_state="draft")
    sn.add_article("Old fax setup", "<p>retired</p>", workflow_state="retired")
    sn.add_article("Hidden", "<p>inactive</p>", active=False)

    report = sync_knowledge_base(COPILOT, sn_source(sn), blobs, state)

    assert (report.added, report.updated, report.removed, report.failed) == (2, 0, 0, 0)
    assert keys(blobs, SN_PREFIX) == [f"{SN_PREFIX}{reset}.html", f"{SN_PREFIX}{vpn}.html"]
    obj = blobs.objects[f"{SN_PREFIX}{reset}.html"]
    record = sn.records(reset)[0]
    assert obj.content_type == "text/html"
    assert obj.metadata == {
        "source-url": f"{sn.url}/kb_view.do?sysparm_article={reset}",
        "title": "Reset your password",
        "updated": sn_time(record["sys_updated_on"]),
    }
    html = obj.body.decode()
    assert html.startswith("<html><head>")
    assert "<title>Reset your password</title>" in html
    assert (
        "<body><h1>Reset your password</h1><p>Open <b>Settings</b> &gt; Security.</p></body>"
        in html
    )
    # No watermark yet: the first run lists published articles only.
    assert sn.table_queries == ["workflow_state=published^active=true^ORDERBYsys_updated_on"]
    saved = state.get_state(COPILOT, "kb:servicenow")
    assert saved is not None
    assert saved["watermark"] == sn_time(sn.records(vpn)[0]["sys_updated_on"])
    assert report.watermark_after is not None and report.watermark_before is None


def test_servicenow_incremental_sync_updates_and_removes(
    sn: ServiceNowKbEmulator, blobs: MemoryBlobStore, state: MemoryStateStore
) -> None:
    source = sn_source(sn)
    reset = sn.add_article("Reset your password", "<p>v1</p>")
    vpn = sn.add_article("Set up the VPN", "<p>Install the client.</p>")
    sync_knowledge_base(COPILOT, source, blobs, state)
    watermark = state.get_state(COPILOT, "kb:servicenow")["watermark"]  # type: ignore[index]
    before = versions(blobs)
    sn.requests.clear()

    report = sync_knowledge_base(COPILOT, source, blobs, state)

    # Nothing changed: one updated-since query, nothing rewritten (the article at the
    # watermark second is read again and recognised as unchanged).
    assert sn.table_queries == [
        f"sys_updated_on>={watermark.replace('T', ' ').rstrip('Z')}^ORDERBYsys_updated_on"
    ]
    assert (report.added, report.updated, report.removed, report.unchanged) == (0, 0, 0, 1)
    assert versions(blobs) == before

    sn.update_article(reset, text="<p>v2: use the self-service portal</p>")
    sn.retire_article(vpn)
    never_synced = sn.add_article("Draft only", "<p>x</p>", workflow_state="draft")
    sn.retire_article(never_synced)
    report = sync_knowledge_base(COPILOT, source, blobs, state)

    assert (report.added, report.updated, report.removed, report.failed) == (0, 1, 1, 0)
    assert report.deleted == [f"{SN_PREFIX}{vpn}.html"]
    assert keys(blobs, SN_PREFIX) == [f"{SN_PREFIX}{reset}.html"]
    assert b"v2: use the self-service portal" in blobs.objects[f"{SN_PREFIX}{reset}.html"].body
    latest = max(r["sys_updated_on"] for r in sn.records())
    assert state.get_state(COPILOT, "kb:servicenow")["watermark"] == sn_time(latest)  # type: ignore[index]


def test_servicenow_versions_and_drafts_do_not_withdraw_the_live_article(
    sn: ServiceNowKbEmulator, blobs: MemoryBlobStore, state: MemoryStateStore
) -> None:
    source = sn_source(sn)
    billing = sn.add_article("Billing", "<p>v1</p>")
    refunds = sn.add_article("Refunds", "<p>live text</p>")
    sn.add_article("Shipping", "<p>newest, so Refunds' record is older than the watermark</p>")
    sync_knowledge_base(COPILOT, source, blobs, state)

    sn.new_version(billing, text="<p>v2</p>")  # v1 record becomes "outdated"
    sn.new_version(refunds, text="<p>work in progress</p>", workflow_state="draft")
    report = sync_knowledge_base(COPILOT, source, blobs, state)

    assert (report.added, report.updated, report.removed, report.unchanged) == (0, 1, 0, 1)
    assert b"<p>v2</p>" in blobs.objects[f"{SN_PREFIX}{billing}.html"].body
    assert b"live text" in blobs.objects[f"{SN_PREFIX}{refunds}.html"].body
    # The draft's number was checked against the published records before any removal.
    assert any(f"numberIN{refunds}" in q for q in sn.table_queries)


def test_servicenow_bad_credentials_raise_and_keep_the_watermark(
    sn: ServiceNowKbEmulator, blobs: MemoryBlobStore, state: MemoryStateStore
) -> None:
    article = sn.add_article("Reset your password", "<p>v1</p>")
    sync_knowledge_base(COPILOT, sn_source(sn), blobs, state)
    saved, before = state.get_state(COPILOT, "kb:servicenow"), versions(blobs)
    sn.update_article(article, text="<p>v2</p>")

    with pytest.raises(ForbiddenError, match=r"rejected the credentials.*USERNAME/PASSWORD"):
        sync_knowledge_base(COPILOT, sn_source(sn, password="wrong"), blobs, state)
    assert sn.requests[-1].status == 401
    oauth = sn_source(
        sn, client_id=sn.client_id, client_secret="wrong", username=None, password=None
    )
    with pytest.raises(ForbiddenError, match="refused the OAuth token request"):
        sync_knowledge_base(COPILOT, oauth, blobs, state)

    assert state.get_state(COPILOT, "kb:servicenow") == saved
    assert versions(blobs) == before
    report = sync_knowledge_base(COPILOT, sn_source(sn), blobs, state)  # nothing was lost
    assert report.updated == 1


def test_servicenow_oauth_token_is_renewed_once_when_it_expires(
    sn: ServiceNowKbEmulator, blobs: MemoryBlobStore, state: MemoryStateStore
) -> None:
    article = sn.add_article("Reset your password", "<p>v1</p>")
    source = sn_source(sn, client_id=sn.client_id, client_secret=sn.client_secret)

    sync_knowledge_base(COPILOT, source, blobs, state)
    sn.expire_tokens()
    sn.update_article(article, text="<p>v2</p>")
    report = sync_knowledge_base(COPILOT, source, blobs, state)

    assert report.updated == 1
    tokens = [r for r in sn.requests if r.path == "/oauth_token.do"]
    assert [t.form["grant_type"] for t in tokens] == ["password", "password"]
    table = [r for r in sn.requests if "/table/" in r.path]
    assert {r.auth for r in table} == {"Bearer"}
    assert [r.status for r in table].count(401) == 1

    app_only = sn_source(
        sn, client_id=sn.client_id, client_secret=sn.client_secret, username=None, password=None
    )
    sync_knowledge_base("other", app_only, MemoryBlobStore(), MemoryStateStore())
    assert sn.requests[0].form == {"grant_type": "password", "username": sn.username}
    assert [r.form for r in sn.requests if r.path == "/oauth_token.do"][-1] == {
        "grant_type": "client_credentials"
    }


def test_servicenow_outage_raises_unavailable_then_recovers(
    sn: ServiceNowKbEmulator, blobs: MemoryBlobStore, state: MemoryStateStore
) -> None:
    article = sn.add_article("Reset your password", "<p>v1</p>")
    sync_knowledge_base(COPILOT, sn_source(sn), blobs, state)
    saved, before = state.get_state(COPILOT, "kb:servicenow"), versions(blobs)
    sn.update_article(article, text="<p>v2</p>")
    source = sn_source(sn, policy=HttpPolicy(timeout=5, retries=1, backoff=0))

    sn.fail_with = 503
    sn.requests.clear()
    with pytest.raises(UnavailableError, match=r"HTTP 503.*next sync retries"):
        sync_knowledge_base(COPILOT, source, blobs, state)
    assert [r.status for r in sn.requests] == [503, 503]  # one retry, then give up
    assert state.get_state(COPILOT, "kb:servicenow") == saved
    assert versions(blobs) == before

    sn.fail_with = None
    report = sync_knowledge_base(COPILOT, source, blobs, state)
    assert report.updated == 1
    assert state.get_state(COPILOT, "kb:servicenow") != saved


def test_servicenow_timeout_raises_unavailable(
    sn: ServiceNowKbEmulator, blobs: MemoryBlobStore, state: MemoryStateStore
) -> None:
    sn.add_article("Reset your password", "<p>v1</p>")
    sn.delay = 0.6
    source = sn_source(sn, policy=HttpPolicy(timeout=0.2, retries=0))
    with pytest.raises(UnavailableError, match=r"did not answer within 0\.2 s"):
        sync_knowledge_base(COPILOT, source, blobs, state)
    assert state.get_state(COPILOT, "kb:servicenow") is None
    assert blobs.objects == {}


@pytest.mark.parametrize("link_header", [True, False], ids=["link-next", "offset-only"])
def test_servicenow_pages_through_the_whole_result(
    sn: ServiceNowKbEmulator, blobs: MemoryBlobStore, state: MemoryStateStore, link_header: bool
) -> None:
    sn.link_header = link_header
    numbers = [sn.add_article(f"Article {i}", f"<p>text {i}</p>") for i in range(25)]

    report = sync_knowledge_base(COPILOT, sn_source(sn, page_size=10), blobs, state)

    assert report.added == 25
    assert keys(blobs, SN_PREFIX) == sorted(f"{SN_PREFIX}{n}.html" for n in numbers)
    pages = [r.args for r in sn.requests if "/table/" in r.path]
    assert [(p["sysparm_offset"], p["sysparm_limit"]) for p in pages] == [
        ("0", "10"),
        ("10", "10"),
        ("20", "10"),
    ]


def test_servicenow_listing_restarts_when_a_record_moves_between_pages(
    sn: ServiceNowKbEmulator, blobs: MemoryBlobStore, state: MemoryStateStore
) -> None:
    numbers = [sn.add_article(f"Article {i}", f"<p>text {i}</p>") for i in range(25)]
    moved: list[int] = []

    def edit_while_paging(offset: int) -> None:
        # Between pages 1 and 2 an editor saves article 3: it moves to the end of the
        # sys_updated_on order and every later record shifts one place to the left.
        if offset == 10 and not moved:
            moved.append(offset)
            sn.update_article(numbers[3], text="<p>edited during the sync</p>")

    sn.before_page = edit_while_paging
    report = sync_knowledge_base(COPILOT, sn_source(sn, page_size=10), blobs, state)

    # Without the restart, the record shifted from offset 10 to 9 would be skipped for good.
    assert report.added == 25
    assert keys(blobs, SN_PREFIX) == sorted(f"{SN_PREFIX}{n}.html" for n in numbers)
    assert b"edited during the sync" in blobs.objects[f"{SN_PREFIX}{numbers[3]}.html"].body
    offsets = [r.args["sysparm_offset"] for r in sn.requests if "/table/" in r.path]
    assert offsets == ["0", "10", "20", "0", "10", "20"]


def test_servicenow_full_sync_removes_what_is_gone_but_not_everything(
    sn: ServiceNowKbEmulator, blobs: MemoryBlobStore, state: MemoryStateStore
) -> None:
    source = sn_source(sn)
    keep = sn.add_article("Keep me", "<p>k</p>")
    gone = sn.add_article("Deleted in ServiceNow", "<p>d</p>")
    sync_knowledge_base(COPILOT, source, blobs, state)
    blobs.put(f"{SN_PREFIX}stray.html", b"<html></html>", "text/html")
    blobs.put(f"{COPILOT}/manual/upload.md", b"# mine", "text/markdown")
    sn.delete_article(gone)  # a hard delete leaves nothing for an incremental query to see

    assert sync_knowledge_base(COPILOT, source, blobs, state).removed == 0
    report = sync_knowledge_base(COPILOT, source, blobs, state, full=True)

    assert (report.removed, report.unchanged) == (2, 1)
    assert keys(blobs, SN_PREFIX) == [f"{SN_PREFIX}{keep}.html"]
    assert f"{COPILOT}/manual/upload.md" in blobs.objects  # other folders are not the sync's

    sn.delete_article(keep)  # e.g. the integration user lost read access to every article
    report = sync_knowledge_base(COPILOT, source, blobs, state, full=True)
    assert report.removed == 0 and "returned no published article" in report.failures[0].reason
    assert keys(blobs, SN_PREFIX) == [f"{SN_PREFIX}{keep}.html"]
    report = sync_knowledge_base(COPILOT, source, blobs, state, full=True, allow_empty=True)
    assert report.removed == 1 and keys(blobs, SN_PREFIX) == []


class FailingPuts(MemoryBlobStore):
    """The in-memory store with a bucket that refuses writes of some keys (e.g. throttling)."""

    def __init__(self) -> None:
        super().__init__()
        self.refuse: set[str] = set()

    def put(self, key: str, body: bytes, content_type: str | None = None,
            metadata: dict[str, str] | None = None) -> None:  # fmt: skip
        if key in self.refuse:
            raise UnavailableError("the knowledge bucket is unavailable")
        super().put(key, body, content_type, metadata)


def test_storage_failure_keeps_the_watermark_and_is_retried(
    sn: ServiceNowKbEmulator, state: MemoryStateStore
) -> None:
    blobs = FailingPuts()
    source = sn_source(sn)
    first = sn.add_article("First", "<p>1</p>")
    sync_knowledge_base(COPILOT, source, blobs, state)
    saved = state.get_state(COPILOT, "kb:servicenow")
    second = sn.add_article("Second", "<p>2</p>")
    third = sn.add_article("Third", "<p>3</p>")
    blobs.refuse = {f"{SN_PREFIX}{second}.html"}

    report = sync_knowledge_base(COPILOT, source, blobs, state)

    assert (report.added, report.failed) == (1, 1)
    assert report.failures[0].article_id == second and report.failures[0].transient
    assert "bucket is unavailable" in report.failures[0].reason
    assert state.get_state(COPILOT, "kb:servicenow") == saved  # the next run reads both again
    assert not report.watermark_advanced

    blobs.refuse = set()
    report = sync_knowledge_base(COPILOT, source, blobs, state)
    assert (report.added, report.unchanged, report.failed) == (1, 2, 0)  # First and Third
    assert keys(blobs, SN_PREFIX) == [f"{SN_PREFIX}{n}.html" for n in (first, second, third)]
    assert report.watermark_advanced


# --- Salesforce -------------------------------------------------------------------------------


def test_salesforce_first_sync_writes_online_articles_as_html(
    sf: SalesforceKbEmulator, blobs: MemoryBlobStore, state: MemoryStateStore
) -> None:
    wifi = sf.add_article("Connect to Wi-Fi", "<p>Choose <i>Acme-Guest</i>.</p>", url_name="wifi")
    billing = sf.add_article("Billing cycles", "<p>Monthly.</p>")
    sf.add_article("Draft only", "<p>not yet</p>", publish_status="Draft")
    archived = sf.add_article("Fax", "<p>old</p>")
    sf.archive_article(archived)

    report = sync_knowledge_base(COPILOT, sf_source(sf), blobs, state)

    assert (report.added, report.removed, report.failed) == (2, 0, 0)
    assert keys(blobs, SF_PREFIX) == [f"{SF_PREFIX}{wifi}.html", f"{SF_PREFIX}{billing}.html"]
    version = sf.versions(wifi)[0]
    obj = blobs.objects[f"{SF_PREFIX}{wifi}.html"]
    assert obj.content_type == "text/html"
    assert obj.metadata == {
        "source-url": f"{sf.url}/lightning/r/Knowledge__kav/{version['Id']}/view",
        "title": "Connect to Wi-Fi",
        "updated": sf_time(version["LastModifiedDate"]),
    }
    assert "<title>Connect to Wi-Fi</title>" in obj.body.decode()
    assert "<h1>Connect to Wi-Fi</h1><p>Choose <i>Acme-Guest</i>.</p>" in obj.body.decode()
    assert [t.form["grant_type"] for t in sf.token_requests] == ["client_credentials"]
    assert sf.soql_queries == [
        "SELECT Id, KnowledgeArticleId, ArticleNumber, Title, UrlName, Summary, "
        "LastModifiedDate, PublishStatus, Body__c FROM Knowledge__kav "
        "WHERE PublishStatus = 'Online' ORDER BY LastModifiedDate"
    ]

    public = sf_source(sf, article_url_base="https://help.acme.example/s/article/")
    sync_knowledge_base("public", public, blobs, MemoryStateStore())
    assert (
        blobs.objects[f"public/kb/salesforce/{wifi}.html"].metadata["source-url"]
        == "https://help.acme.example/s/article/wifi"
    )


def test_salesforce_incremental_sync_updates_and_removes(
    sf: SalesforceKbEmulator, blobs: MemoryBlobStore, state: MemoryStateStore
) -> None:
    source = sf_source(sf)
    wifi = sf.add_article("Connect to Wi-Fi", "<p>v1</p>")
    fax = sf.add_article("Fax", "<p>old</p>")
    billing = sf.add_article("Billing", "<p>Monthly.</p>")
    sync_knowledge_base(COPILOT, source, blobs, state)
    watermark = state.get_state(COPILOT, "kb:salesforce")["watermark"]  # type: ignore[index]
    before = versions(blobs)
    sf.requests.clear()

    report = sync_knowledge_base(COPILOT, source, blobs, state)

    assert (report.added, report.updated, report.removed, report.unchanged) == (0, 0, 0, 1)
    assert versions(blobs) == before
    online, archived = sf.soql_queries
    assert online.endswith(f"AND LastModifiedDate >= {watermark} ORDER BY LastModifiedDate")
    assert (
        f"PublishStatus = 'Archived' AND IsLatestVersion = true AND ArchivedDate >= {watermark}"
        in archived
    )

    sf.update_article(wifi, body="<p>v2</p>")  # new version; v1 archived but not latest
    sf.archive_article(fax)
    sf.draft_article(billing, body="<p>unpublished edit</p>")
    report = sync_knowledge_base(COPILOT, source, blobs, state)

    assert (report.added, report.updated, report.removed, report.failed) == (0, 1, 1, 0)
    assert keys(blobs, SF_PREFIX) == [f"{SF_PREFIX}{wifi}.html", f"{SF_PREFIX}{billing}.html"]
    obj = blobs.objects[f"{SF_PREFIX}{wifi}.html"]
    online_version = next(v for v in sf.versions(wifi) if v["PublishStatus"] == "Online")
    assert b"<p>v2</p>" in obj.body
    assert online_version["Id"] in obj.metadata["source-url"]
    assert b"Monthly." in blobs.objects[f"{SF_PREFIX}{billing}.html"].body
    archived_at = next(v["ArchivedDate"] for v in sf.versions(fax))
    assert state.get_state(COPILOT, "kb:salesforce")["watermark"] == sf_time(archived_at)  # type: ignore[index]


def test_salesforce_bad_credentials_raise_and_keep_the_watermark(
    sf: SalesforceKbEmulator, blobs: MemoryBlobStore, state: MemoryStateStore
) -> None:
    article = sf.add_article("Connect to Wi-Fi", "<p>v1</p>")
    sync_knowledge_base(COPILOT, sf_source(sf), blobs, state)
    saved, before = state.get_state(COPILOT, "kb:salesforce"), versions(blobs)
    sf.update_article(article, body="<p>v2</p>")

    with pytest.raises(ForbiddenError, match=r"invalid_client.*CLIENT_ID/CLIENT_SECRET"):
        sync_knowledge_base(COPILOT, sf_source(sf, client_secret="wrong"), blobs, state)
    password_flow = sf_source(sf, username=sf.username, password="wrong")
    with pytest.raises(ForbiddenError, match=r"invalid_grant.*USERNAME/PASSWORD"):
        sync_knowledge_base(COPILOT, password_flow, blobs, state)

    assert state.get_state(COPILOT, "kb:salesforce") == saved
    assert versions(blobs) == before
    good = sf_source(sf, username=sf.username, password=sf.password)
    assert sync_knowledge_base(COPILOT, good, blobs, state).updated == 1
    assert sf.token_requests[-1].form["grant_type"] == "password"


def test_salesforce_outage_raises_unavailable_then_recovers(
    sf: SalesforceKbEmulator, blobs: MemoryBlobStore, state: MemoryStateStore
) -> None:
    article = sf.add_article("Connect to Wi-Fi", "<p>v1</p>")
    source = sf_source(sf)
    sync_knowledge_base(COPILOT, source, blobs, state)
    saved, before = state.get_state(COPILOT, "kb:salesforce"), versions(blobs)
    sf.update_article(article, body="<p>v2</p>")

    sf.fail_with = 500
    with pytest.raises(UnavailableError, match="HTTP 500"):
        sync_knowledge_base(COPILOT, source, blobs, state)
    assert state.get_state(COPILOT, "kb:salesforce") == saved
    assert versions(blobs) == before

    sf.fail_with = None
    assert sync_knowledge_base(COPILOT, source, blobs, state).updated == 1


def test_salesforce_pages_through_next_records_url(
    sf: SalesforceKbEmulator, blobs: MemoryBlobStore, state: MemoryStateStore
) -> None:
    sf.page_size = 3
    numbers = [sf.add_article(f"Article {i}", f"<p>{i}</p>") for i in range(8)]

    report = sync_knowledge_base(COPILOT, sf_source(sf), blobs, state)

    assert report.added == 8
    assert keys(blobs, SF_PREFIX) == sorted(f"{SF_PREFIX}{n}.html" for n in numbers)
    more = [r.path.rsplit("-", 1)[1] for r in sf.requests if "/query/01g" in r.path]
    assert more == ["3", "6"]


def test_salesforce_expired_session_is_renewed_once(
    sf: SalesforceKbEmulator, blobs: MemoryBlobStore, state: MemoryStateStore
) -> None:
    article = sf.add_article("Connect to Wi-Fi", "<p>v1</p>")
    source = sf_source(sf)
    sync_knowledge_base(COPILOT, source, blobs, state)

    sf.expire_tokens()
    sf.update_article(article, body="<p>v2</p>")
    report = sync_knowledge_base(COPILOT, source, blobs, state)

    assert report.updated == 1
    assert len(sf.token_requests) == 2
    assert [r.status for r in sf.requests].count(401) == 1

    # A session that dies at once: one renewal, then a clear error rather than a loop.
    sf.session_seconds = 0
    sf.expire_tokens()
    saved = state.get_state(COPILOT, "kb:salesforce")
    with pytest.raises(ForbiddenError, match="freshly issued session"):
        sync_knowledge_base(COPILOT, source, blobs, state)
    assert len(sf.token_requests) == 3
    assert state.get_state(COPILOT, "kb:salesforce") == saved


def test_salesforce_wrong_body_field_is_a_configuration_error(
    sf: SalesforceKbEmulator, blobs: MemoryBlobStore, state: MemoryStateStore
) -> None:
    sf.add_article("Connect to Wi-Fi", "<p>v1</p>")
    with pytest.raises(BadRequestError, match=r"COPILOT_SALESFORCE_BODY_FIELD.*Article_Body__c"):
        sync_knowledge_base(COPILOT, sf_source(sf, body_field="Article_Body__c"), blobs, state)
    assert state.get_state(COPILOT, "kb:salesforce") is None


# --- configuration and the real S3 adapter ----------------------------------------------------


def test_settings_come_from_the_environment(
    sn: ServiceNowKbEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COPILOT_SERVICENOW_INSTANCE_URL", sn.url)
    monkeypatch.setenv("COPILOT_SERVICENOW_USERNAME", sn.username)
    monkeypatch.setenv("COPILOT_SERVICENOW_PASSWORD", sn.password)
    settings = ServiceNowSettings()
    assert sn.password not in repr(settings)
    sn.add_article("Reset your password", "<p>v1</p>")
    source = ServiceNowKnowledge.from_settings(settings, policy=FAST)
    assert sync_knowledge_base(COPILOT, source, MemoryBlobStore(), MemoryStateStore()).added == 1

    monkeypatch.delenv("COPILOT_SERVICENOW_PASSWORD")
    with pytest.raises(BadRequestError, match="COPILOT_SERVICENOW_PASSWORD"):
        ServiceNowKnowledge.from_settings()

    monkeypatch.setenv("COPILOT_SALESFORCE_CLIENT_ID", "key")
    monkeypatch.setenv("COPILOT_SALESFORCE_CLIENT_SECRET", "s3cret")
    sf_settings = SalesforceSettings()
    assert (sf_settings.api_version, sf_settings.body_field) == ("60.0", "Body__c")
    assert "s3cret" not in repr(sf_settings)
    assert (
        SalesforceKnowledge.from_settings(sf_settings).login_url == "https://login.salesforce.com"
    )


def test_sync_through_the_s3_adapter_round_trips_metadata(
    moto_url: str, sf: SalesforceKbEmulator, state: MemoryStateStore
) -> None:
    client = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    bucket = f"kb-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    blobs = S3BlobStore(client, bucket)
    cafe = sf.add_article("Café Wi-Fi: 5 GHz only", "<p>Réseau « Acme »</p>", url_name="cafe-wifi")
    fax = sf.add_article("Fax", "<p>old</p>")
    source = sf_source(sf, article_url_base="https://help.acme.example/s/article")

    report = sync_knowledge_base(COPILOT, source, blobs, state)
    assert report.added == 2

    key = f"{SF_PREFIX}{cafe}.html"
    head = client.head_object(Bucket=bucket, Key=key)
    assert head["ContentType"] == "text/html"
    meta = head["Metadata"]
    assert meta["source-url"] == "https://help.acme.example/s/article/cafe-wifi"
    title = str(email.header.make_header(email.header.decode_header(meta["title"])))
    assert title == "Café Wi-Fi: 5 GHz only"
    assert meta["updated"] == sf_time(sf.versions(cafe)[0]["LastModifiedDate"])
    stored = blobs.get(key, 1_000_000)
    assert stored is not None and stored.metadata["source-url"] == meta["source-url"]
    assert "<h1>Café Wi-Fi: 5 GHz only</h1><p>Réseau « Acme »</p>" in stored.body.decode()

    # S3's ETag is the MD5 of the body: an unchanged article is recognised and not rewritten.
    again = sync_knowledge_base(COPILOT, source, blobs, state, full=True)
    assert (again.unchanged, again.written) == (2, [])

    sf.archive_article(fax)
    report = sync_knowledge_base(COPILOT, source, blobs, state)
    assert report.deleted == [f"{SF_PREFIX}{fax}.html"]
    listed = client.list_objects_v2(Bucket=bucket, Prefix=SF_PREFIX)["Contents"]
    assert [o["Key"] for o in listed] == [key]
