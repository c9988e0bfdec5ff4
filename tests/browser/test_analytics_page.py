"""The analytics page in Chromium, against the whole local stack: after a known mix of
conversations (tests/analytics_mix.py), the page shows the exact figures the admin API holds
(rates, CSAT, feedback, the unanswered question, the documents) and draws its charts over
time; without the page's token it shows nothing; axe-core finds no serious or critical
accessibility problem."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.sync_api import expect

from copilot_dev.analytics_page import AnalyticsPage
from copilot_dev.client import CopilotClient
from copilot_dev.emulators.agent_desk import AgentDesk
from tests import analytics_mix
from tests.browser.conftest import axe_violations
from tests.conftest import desk_stack

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

SECRET = "browser-analytics-secret"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with desk_stack(tmp_path_factory, "analytics-page-stack", SECRET, analytics_window=0.2) as s:
        yield s


@pytest.fixture(scope="module")
def analytics_page(stack: Any) -> Iterator[AnalyticsPage]:
    config = stack.config
    with AnalyticsPage(config.function_url("chat"), config.admin_api_key) as running:
        yield running


def test_the_page_shows_the_mix_figures_and_charts(
    stack: Any, desk: AgentDesk, analytics_page: AnalyticsPage, page: Any
) -> None:
    client: CopilotClient = stack.copilot_client()
    mix = analytics_mix.drive(stack, client, desk)
    report = analytics_mix.archived(client, mix)
    assert report.events == analytics_mix.EVENTS

    query = urlencode({"copilot": mix.copilot_id, "until": mix.until.isoformat()})
    page.goto(f"{analytics_page.url}/?{query}#token={analytics_page.token}")
    expect(page.locator("body")).to_have_attribute("data-loaded", mix.copilot_id, timeout=30_000)

    def figure(name: str) -> Any:
        return page.locator(f'[data-figure="{name}"] .v')

    expect(figure("conversations")).to_have_text("4")
    expect(figure("engagement")).to_have_text("100.0%")
    expect(figure("resolution")).to_have_text("25.0%")
    expect(figure("escalation")).to_have_text("25.0%")
    expect(figure("abandon")).to_have_text("50.0%")
    expect(figure("csat")).to_have_text("3.5 (2)")
    expect(figure("feedback")).to_have_text("0 up / 1 down")
    assert page.locator('[data-figure="lost"]').count() == 0
    rows = page.locator("#unanswered tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Do you rent submarines?")
    documents = page.locator("#documents tbody tr")
    expect(documents).to_have_count(1)
    expect(documents.first.locator("td")).to_have_text(["repairs.md", "2", "1"])
    # The charts over time: one day of four conversations, by outcome; the day's rates.
    conv_chart = page.locator("#c-conv svg")
    expect(conv_chart).to_have_attribute(
        "aria-label",
        f"Conversations a day. {report.daily[0].day.isoformat()}: resolved 1, "
        "escalated 1, abandoned 2, other 0",
    )
    expect(conv_chart.locator("rect")).to_have_count(3)  # resolved, escalated, abandoned
    expect(page.locator("#c-rates svg")).to_have_attribute(
        "aria-label",
        f"Rates a day. {report.daily[0].day.isoformat()}: engagement 100%, resolution 25%, "
        "escalation 25%, abandon 50%",
    )
    expect(page.locator("#c-dist svg")).to_have_attribute(
        "aria-label", "CSAT responses by score: 1: 0, 2: 1, 3: 0, 4: 0, 5: 1"
    )
    day = report.daily[0]
    expect(page.locator("#c-feedback svg")).to_have_attribute(
        "aria-label", f"Answer feedback a day. {day.day.isoformat()}: up 0, down 1"
    )
    assert day.handoff_wait_p50_s is not None
    expect(page.locator("#c-wait svg")).to_have_attribute(
        "aria-label",
        f"Hand-off wait a day. {day.day.isoformat()}: wait p50 {day.handoff_wait_p50_s:g} s",
    )
    assert axe_violations(page) == []


def test_without_the_token_the_page_shows_nothing(analytics_page: AnalyticsPage, page: Any) -> None:
    page.goto(analytics_page.url + "/")
    expect(page.locator("#status")).to_contain_text("Open this page with the link")
    assert page.locator("#copilot option").count() == 0
