"""A long hand-off on a hub without webhooks (Salesforce, Dynamics 365), read by pull jobs.

    .venv/bin/python bench/pull_soak.py --hub salesforce|dynamics365 [--minutes 10]
        [--window 20] [--json out.json]

Runs the local stack and the hub's emulator, escalates one conversation and has the agent send
messages at random times (0.1 s to 30 s apart) for ``--minutes``; a customer poller records
when each shows. Reports: messages sent / shown / shown once / in order, agent -> customer
latency (p50/p95/max), pull jobs run, and how long after the agent ended the chat the last
pull job finished (the queue empty).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _desk_stack import CustomerPoller, desk_stack
from _stats import machine, print_rows, summary, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hub", default="salesforce")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--window", type=float, default=20, help="seconds one pull job reads")
    parser.add_argument("--max-gap", type=float, default=30, help="longest pause between messages")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    load_before = os.getloadavg()
    with desk_stack(args.hub, stack={"hub_pull_window": args.window}) as bench:
        client, desk, stack = bench.client, bench.desk, bench.stack
        s = client.start(bench.copilot_id)
        conv, token = s.conversation_id, s.token
        client.send(conv, token, "talk to a person")
        desk.wait_for_session(conv, timeout=30)
        poller = CustomerPoller(bench.chat_url, conv, token, wait=0)
        poller.start()
        rng = random.Random(16)
        sent: dict[str, float] = {}
        deadline = time.perf_counter() + args.minutes * 60
        while time.perf_counter() < deadline:
            text = f"agent message {len(sent) + 1}"
            t0 = time.perf_counter()
            assert desk.say(conv, text).ok
            sent[text] = t0
            time.sleep(rng.uniform(0.1, args.max_gap))
        latencies = [(poller.wait_for(text, timeout=120) - t0) * 1000 for text, t0 in sent.items()]
        jobs = stack.pull_jobs_run
        t_end = time.perf_counter()
        assert desk.end(conv).ok
        while stack.pull_jobs_pending():
            time.sleep(0.1)
        stopped_after = time.perf_counter() - t_end
        poller.stop.set()
        poller.join(5)
        shown: list[str] = []
        after = 0
        while page := client.messages(conv, token, after=after).messages:
            shown += [m.text for m in page if m.role == "agent"]
            after = page[-1].seq

    results = {
        "hub": args.hub,
        "minutes": args.minutes,
        "window_seconds": args.window,
        "sent": len(sent),
        "shown": len(shown),
        "shown_once": len(set(shown)) == len(shown),
        "in_order": shown == list(sent),
        "pull_jobs": jobs,
        "jobs_stopped_after_end_s": round(stopped_after, 2),
        "agent_to_customer_poll_ms": summary(latencies),
        "machine": machine(load_before),
        "samples": {"agent_to_customer_poll_ms": latencies},
    }
    for key in ("hub", "sent", "shown", "shown_once", "in_order", "pull_jobs"):
        print(f"{key}: {results[key]}")
    print(f"jobs stopped {stopped_after:.1f} s after the agent ended the chat")
    print_rows(results, ("agent_to_customer_poll_ms",))
    write_json(args.json, results)


if __name__ == "__main__":
    main()
