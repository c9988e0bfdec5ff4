"""A new chat process at one knowledge-base size: run by scale.py, never by hand.

    python bench/_scale_child.py <functions/chat/main.py> '<json config>'

Imports the chat function by its path (as Lambda does), answers one knowledge question in a
conversation the parent started (the first turn pays every lazy init: clients, the embedder,
the BM25 segments' download), then answers ``warm`` more questions in conversations of its own
and reports their latencies, whether each reply cited the file that holds the answer, and the
process's resident memory. One JSON line on stdout. With SCALE_PROFILE_FIRST_TURN=<path> in
the environment, the first turn is profiled (cProfile) into that file; with
SCALE_PROFILE_WARM=<path>, the warm turns.
"""

import time

_T0 = time.perf_counter()

import logging  # noqa: E402
import sys  # noqa: E402

logging.basicConfig(level=logging.WARNING)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    main_path, raw_config = sys.argv[1], sys.argv[2]
    import importlib.util

    spec = importlib.util.spec_from_file_location("chat_main", main_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["chat_main"] = module
    spec.loader.exec_module(module)
    t_imported = time.perf_counter()

    import json
    import os
    import resource

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _apigw import copilot_replies, post_message_event, start_conversation_event

    config = json.loads(raw_config)
    t_bench = time.perf_counter()
    event = post_message_event(config["conversation_id"], config["token"], config["first"])
    plumbing = time.perf_counter() - t_bench
    profile_to = os.environ.get("SCALE_PROFILE_FIRST_TURN")  # a path: cProfile the first turn
    profiler = None
    if profile_to:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    t = time.perf_counter()
    first = module.lambda_handler(event, None)
    t_first = time.perf_counter()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile_to)
    if first.get("statusCode") != 200:
        sys.stdout.write(json.dumps({"error": first.get("body", "")[:500]}) + "\n")
        return 1
    rss_after_first = rss_mb()

    def cited(response: dict, doc_key: str) -> bool:
        for message in copilot_replies(response):
            for citation in message.get("citations") or []:
                if citation.get("source") == doc_key:
                    return True
        return False

    turns: list[float] = []
    right: list[bool] = []
    misses: list[dict[str, str]] = []
    warm_profile_to = os.environ.get("SCALE_PROFILE_WARM")  # a path: cProfile the warm turns
    if warm_profile_to:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    conversation, token, used = "", "", 0
    for question, doc_key in config["warm"]:
        if not conversation or used >= 4:
            r = module.lambda_handler(start_conversation_event(config["copilot_id"]), None)
            body = json.loads(r["body"])
            conversation, token, used = body["conversation_id"], body["token"], 0
        used += 1
        ev = post_message_event(conversation, token, question)
        t0 = time.perf_counter()
        response = module.lambda_handler(ev, None)
        turns.append((time.perf_counter() - t0) * 1000)
        if response.get("statusCode") != 200:
            sys.stdout.write(json.dumps({"error": response.get("body", "")[:500]}) + "\n")
            return 1
        right.append(cited(response, doc_key))
        if not right[-1]:  # what it answered instead, to see why
            replies = [m.get("text", "") for m in copilot_replies(response)]
            misses.append(
                {"question": question, "expected": doc_key, "reply": " ".join(replies)[:400]}
            )
    if warm_profile_to and profiler is not None:
        profiler.disable()
        profiler.dump_stats(warm_profile_to)
    result = {
        "imports_ms": (t_imported - _T0) * 1000,
        "first_turn_ms": (t_first - t) * 1000,
        # process start -> first reply, as a customer waits on a cold start
        "cold_total_ms": (t_first - _T0 - plumbing) * 1000,
        "first_cited": cited(first, config["first_doc"]),
        "warm_ms": turns,
        "warm_cited_right": sum(right),
        "warm_misses": misses,
        "rss_after_first_mb": rss_after_first,
        "rss_mb": rss_mb(),
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
