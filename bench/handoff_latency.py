"""Hand-off relay latency over the local stack, both directions, for each hub's emulator.

    .venv/bin/python bench/handoff_latency.py [--hub generic|genesys|liveperson|connect|all]
        [--agent N] [--customer N] [--json out.json]

Starts the real local stack in-process (moto server, Chroma, the functions under
functions-framework, the outbox pump) and the hub's loopback emulator (the agent desk in front
of it), makes a copilot whose hub it is, escalates one conversation and has the agent join.
Then, over the hub's own wire protocol:

1. agent -> customer: the emulator delivers the agent's message to the hand-off function the
   hub's way (a signed webhook; an SNS notification for Connect) (t0 just before); a customer
   poller thread calls ``GET /conversations/{id}/messages`` back to back, as fast as the API
   answers, and records when the text first shows (t1). Also the delivery's round trip alone.
2. customer -> agent: ``POST /conversations/{id}/messages`` (t0) until the emulator holds the
   text (t1). This path goes through the outbox: DynamoDB append, SQS FIFO send, the pump's
   long poll, the outbox target, the hub's API call(s).
3. hand-off start: the escalation turn (t0) until the emulator has the hand-off.

Messages are paced (one at a time, ``--gap`` seconds apart), so the figures are latencies, not
throughput under load. See docs/benchmarks-handoff.md for results.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

TARGET_P95_MS = 1000.0  # agent -> visible to the customer's poll

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _desk_stack import CustomerPoller, desk_stack  # noqa: E402
from _stats import machine, print_rows, summary, write_json  # noqa: E402


def wait_desk(desk: Any, conversation: str, text: str, timeout: float = 30) -> float:
    deadline = time.perf_counter() + timeout
    while text not in desk.session(conversation).customer_texts:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"the desk never got {text!r}")
        time.sleep(0.001)
    return time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", type=int, default=100, help="agent messages to time")
    parser.add_argument("--customer", type=int, default=50, help="customer messages to time")
    parser.add_argument("--starts", type=int, default=10, help="hand-off starts to time")
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between messages")
    parser.add_argument("--json", type=Path, help="write every sample here (per hub: <stem>_<hub>)")
    parser.add_argument("--hub", default="generic", help="the hub to emulate, or 'all'")
    args = parser.parse_args()
    hubs = ["generic", "genesys", "liveperson", "connect"] if args.hub == "all" else [args.hub]
    for hub in hubs:
        print(f"--- {hub}", flush=True)
        json_path = args.json
        if json_path is not None and len(hubs) > 1:
            json_path = json_path.with_name(f"{json_path.stem}_{hub}{json_path.suffix}")
        run(hub, args, json_path)


def run(hub: str, args: argparse.Namespace, json_path: Path | None) -> None:
    load_before = os.getloadavg()
    with desk_stack(hub) as bench:
        client, desk, copilot_id = bench.client, bench.desk, bench.copilot_id

        starts: list[float] = []
        for _ in range(args.starts + 1):  # the first one warms the functions up
            s = client.start(copilot_id)
            t0 = time.perf_counter()
            client.send(s.conversation_id, s.token, "talk to a person")
            desk.wait_for_session(s.conversation_id, timeout=30)
            starts.append((time.perf_counter() - t0) * 1000)
            client.cancel_handoff(s.conversation_id, s.token)
        starts = starts[1:]

        s = client.start(copilot_id)
        conv, token = s.conversation_id, s.token
        client.send(conv, token, "talk to a person")
        desk.wait_for_session(conv, timeout=30)
        desk.join(conv)
        poller = CustomerPoller(bench.chat_url, conv, token)
        poller.start()

        relay, webhook = [], []
        for i in range(args.agent + 1):
            text = f"agent message {i}"
            t0 = time.perf_counter()
            response = desk.say(conv, text)
            t_ack = time.perf_counter()
            assert response.ok, response.text
            t1 = poller.wait_for(text)
            if i:  # the first one warms up
                relay.append((t1 - t0) * 1000)
                webhook.append((t_ack - t0) * 1000)
            time.sleep(args.gap)
        poll_rate = poller.polls

        outbound = []
        for i in range(args.customer + 1):
            text = f"customer message {i}"
            t0 = time.perf_counter()
            client.send(conv, token, text)
            t1 = wait_desk(desk, conv, text)
            if i:
                outbound.append((t1 - t0) * 1000)
            time.sleep(args.gap)
        poller.stop.set()
        poller.join(5)

    results = {
        "agent_to_customer_poll_ms": summary(relay),
        "agent_webhook_round_trip_ms": summary(webhook),
        "customer_to_agent_ms": summary(outbound),
        "handoff_start_ms": summary(starts),
        "customer_polls": poll_rate,
        "hub": hub,
        "target_agent_to_customer_p95_ms": TARGET_P95_MS,
        "machine": machine(load_before),
        "samples": {
            "agent_to_customer_poll_ms": relay,
            "customer_to_agent_ms": outbound,
            "handoff_start_ms": starts,
        },
    }
    print_rows(
        results,
        (
            "agent_to_customer_poll_ms",
            "agent_webhook_round_trip_ms",
            "customer_to_agent_ms",
            "handoff_start_ms",
        ),
    )
    print(f"load average before {load_before}, after {os.getloadavg()}")
    write_json(json_path, results)


if __name__ == "__main__":
    main()
