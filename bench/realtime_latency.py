"""Agent -> customer latency through the long-poll (GET messages ?wait=S) on the local stack.

    .venv/bin/python bench/realtime_latency.py [--messages N] [--wait S] [--json out.json]

Starts the real local stack in-process (moto server, Chroma, the functions under
functions-framework, the outbox pump) and the agent desk (the generic hub emulator), makes a
copilot whose hub is the desk, escalates one conversation and has the agent join. A customer
thread long-polls the conversation (``?after=<last seq>&wait=S``), one poll at a time as a
client would. For each message the agent's desk POSTs a signed ``agent.message`` webhook (t0
just before the POST) once the customer's poll is already waiting (a random 0-1 s later, so
the message lands anywhere in the poll's pause cycle); t1 is when the long-poll returned it.
Also counted: the polls made (a long-poll returns once per message, plus the empty ones when
a wait ran out) against what a back-to-back short poller makes in the same time
(bench/handoff_latency.py). See docs/realtime.md for results.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

TARGET_P95_MS = 1000.0  # agent webhook -> the customer's long-poll returns it

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _desk_stack import CustomerPoller, desk_stack  # noqa: E402
from _stats import machine, print_rows, summary, write_json  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50, help="agent messages to time")
    parser.add_argument("--wait", type=int, default=20, help="the long-poll's wait (s)")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--json", type=Path, help="write every sample here")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    load_before = os.getloadavg()
    with desk_stack() as bench:
        client, desk, copilot_id = bench.client, bench.desk, bench.copilot_id
        s = client.start(copilot_id)
        conv, token = s.conversation_id, s.token
        client.send(conv, token, "talk to a person")
        desk.wait_for_session(conv, timeout=30)
        desk.join(conv)
        poller = CustomerPoller(bench.chat_url, conv, token, args.wait)
        poller.after = client.messages(conv, token).last_seq
        poller.start()

        relay, webhook = [], []
        t_start = time.perf_counter()
        for i in range(args.messages + 1):  # the first one warms up
            text = f"agent message {i}"
            poller.waiting.wait(10)
            time.sleep(rng.uniform(0, 1))  # anywhere in the poll's pause cycle
            t0 = time.perf_counter()
            response = desk.say(conv, text)
            t_ack = time.perf_counter()
            assert response.ok, response.text
            t1 = poller.wait_for(text)
            if i:
                relay.append((t1 - t0) * 1000)
                webhook.append((t_ack - t0) * 1000)
        elapsed = time.perf_counter() - t_start
        poller.stop.set()

    results: dict[str, Any] = {
        "agent_to_long_poll_ms": summary(relay),
        "agent_webhook_round_trip_ms": summary(webhook),
        "wait_s": args.wait,
        "long_polls": poller.polls,
        "empty_long_polls": poller.empty,
        "seconds": elapsed,
        "target_agent_to_customer_p95_ms": TARGET_P95_MS,
        "machine": machine(load_before),
        "samples": {"agent_to_long_poll_ms": relay, "agent_webhook_round_trip_ms": webhook},
    }
    print_rows(results, ("agent_to_long_poll_ms", "agent_webhook_round_trip_ms"))
    print(
        f"{poller.polls} long-polls ({poller.empty} empty) in {elapsed:.1f} s; "
        f"load average before {load_before}, after {os.getloadavg()}"
    )
    write_json(args.json, results)


if __name__ == "__main__":
    main()
