"""Agent -> page latency: an agent's message, from the hub's webhook to the web chat in Chromium.

    .venv/bin/python bench/widget_latency.py [--messages N] [--json out.json]

Starts the real local stack in-process (moto server, Chroma, the functions under
functions-framework, the outbox pump), the agent desk (the generic hub emulator) and the demo
site (copilot_dev.demo_site: a page of another origin with the widget's script tag), and opens
the site in headless Chromium (Debian's package, through Playwright). In the page the customer
opens the chat and asks for a person; the agent joins. For each message the desk POSTs a signed
``agent.message`` webhook (t0, wall clock, just before the POST) a random 0-1 s after the last
one, so it lands anywhere in the widget's long-poll cycle; t1 is when the widget rendered it
(its ``copilot:message`` event, wall clock in the page: same machine, same clock). Also
reported: the widget script's size, raw and gzipped. See docs/realtime.md and docs/widget.md.
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _desk_stack import ROOT, desk_stack
from _stats import machine, print_rows, summary, write_json

TARGET_P95_MS = 1000.0  # agent webhook -> message visible in the page
WIDGET_JS = ROOT / "shared" / "copilot" / "entrypoints" / "http" / "static" / "widget.js"

# Every message the widget renders, with the page's wall clock (ms since the epoch).
RECORD = """() => {
  window.__seen = {};
  window.addEventListener('copilot:message', (e) => {
    const text = (e.detail && e.detail.text) || '';
    if (!(text in window.__seen)) window.__seen[text] = performance.timeOrigin + performance.now();
  });
}"""


def widget_size() -> dict[str, int]:
    raw = WIDGET_JS.read_bytes()
    return {"raw_bytes": len(raw), "gzip_bytes": len(gzip.compress(raw, 9))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50, help="agent messages to time")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--json", type=Path, help="write every sample here")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from copilot_dev.browser import launch_chromium
    from copilot_dev.demo_site import DemoSite

    rng = random.Random(args.seed)
    load_before = os.getloadavg()
    with desk_stack() as bench, DemoSite(bench.chat_url) as site, sync_playwright() as pw:
        desk = bench.desk
        bench.client.update_copilot(bench.copilot_id, {"allowed_origins": site.origins()})
        site.copilot_id = bench.copilot_id
        browser = launch_chromium(pw)
        page = browser.new_page()
        page.set_default_timeout(30_000)
        page.goto(site.url)
        page.evaluate(RECORD)
        page.locator('[data-copilot="launcher"]').click()
        page.locator('[data-copilot="message"][data-role="bot"]').first.wait_for()
        page.locator('[data-copilot="input"]').fill("talk to a person")
        page.locator('[data-copilot="send"]').click()
        deadline = time.time() + 30
        while not desk.sessions() and time.time() < deadline:
            time.sleep(0.05)
        conv = desk.sessions()[0].conversation_id
        assert desk.join(conv).ok

        relay, webhook = [], []
        t_start = time.perf_counter()
        for i in range(args.messages + 1):  # the first one warms up
            text = f"agent message {i}"
            time.sleep(rng.uniform(0, 1))  # anywhere in the long-poll's pause cycle
            t0 = time.time() * 1000
            response = desk.say(conv, text)
            t_ack = time.time() * 1000
            assert response.ok, response.text
            seen = page.wait_for_function(
                "(text) => window.__seen[text]", arg=text, polling=20
            ).json_value()
            page.locator('[data-copilot="message"][data-role="agent"]').filter(
                has_text=text
            ).wait_for()  # rendered, not only announced
            if i:
                relay.append(float(seen) - t0)
                webhook.append(t_ack - t0)
        elapsed = time.perf_counter() - t_start
        browser.close()

    results: dict[str, Any] = {
        "agent_to_page_ms": summary(relay),
        "agent_webhook_round_trip_ms": summary(webhook),
        "seconds": elapsed,
        "target_agent_to_page_p95_ms": TARGET_P95_MS,
        "widget": widget_size(),
        "machine": machine(load_before),
        "samples": {"agent_to_page_ms": relay, "agent_webhook_round_trip_ms": webhook},
    }
    print_rows(results, ("agent_to_page_ms", "agent_webhook_round_trip_ms"))
    size = results["widget"]
    print(f"widget.js: {size['raw_bytes']:,} B, {size['gzip_bytes']:,} B gzipped")
    print(f"{elapsed:.1f} s; load average before {load_before}, after {os.getloadavg()}")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
