"""Cold-start probe: one fresh interpreter = one Lambda cold start of the chat function.

Run by chat_latency.py, never by hand:

    python bench/_cold_child.py <functions/chat/main.py> <mode> '<json config>'

mode "turn":   import the handler module, then answer one message (the first turn pays every
               lazy init: apig-wsgi adapter, settings, boto3 clients, Chroma client, embedder).
mode "phased": the same, but builds the container's pieces one by one before the first turn so
               each init cost is timed on its own (no code under test is patched).

Prints one JSON line on stdout. Phase markers ("@@phase <name>") go to stderr so that a run
under ``python -X importtime`` can attribute each import to a phase.
"""

import time

_T0 = time.perf_counter()  # first statement: everything before it is interpreter startup
_C0 = time.process_time()

# What the Lambda runtime does before it imports the handler module: a handler on the root
# logger (so a library's logging.basicConfig() is a no-op, as on Lambda). Timed, but not
# counted as the function's cost.
import logging  # noqa: E402
import sys  # noqa: E402 - already loaded by the interpreter, free

logging.basicConfig(level=logging.WARNING)
_T_RUNTIME = time.perf_counter()
_C_RUNTIME = time.process_time()


def _mark(phase: str) -> None:
    sys.stderr.write(f"@@phase {phase}\n")
    sys.stderr.flush()


def main() -> int:
    main_path, mode, raw_config = sys.argv[1], sys.argv[2], sys.argv[3]
    phases: dict[str, float] = {}
    new_packages: dict[str, dict[str, int]] = {}  # step -> top-level package -> modules loaded
    last = _T_RUNTIME
    seen = set(sys.modules)

    def step(name: str) -> None:
        nonlocal last, seen
        now = time.perf_counter()
        phases[name] = (now - last) * 1000
        loaded = set(sys.modules)
        counts: dict[str, int] = {}
        for mod in loaded - seen:
            top = mod.split(".")[0]
            counts[top] = counts.get(top, 0) + 1
        new_packages[name] = dict(sorted(counts.items(), key=lambda kv: -kv[1]))
        seen = loaded
        last = time.perf_counter()  # the bookkeeping above is not charged to the next step

    # --- what Lambda does on a cold start: import the handler module by its path -----------
    _mark("imports")
    import importlib.util

    spec = importlib.util.spec_from_file_location("chat_main", main_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["chat_main"] = module
    spec.loader.exec_module(module)
    step("imports")
    t_imported = last
    cpu_imports_ms = (time.process_time() - _C_RUNTIME) * 1000

    # --- bench plumbing (standard library only; not part of the function's cost) -----------
    _mark("bench")
    import json
    import os

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _apigw import copilot_replies, has_citation, post_message_event

    config = json.loads(raw_config)
    event = post_message_event(config["conversation_id"], config["token"], config["text"])
    plumbing_ms = (time.perf_counter() - last) * 1000
    seen = set(sys.modules)
    last = time.perf_counter()
    cpu_plumbing_ms = (time.process_time() - _C_RUNTIME) * 1000 - cpu_imports_ms

    if mode == "phased":
        # The container's pieces, built one at a time in the order a knowledge turn needs them.
        # Only public container properties: whatever each one imports is charged to its step.
        _mark("init")
        from copilot import bootstrap

        c = bootstrap.container()
        step("init: settings + container")
        c.copilots  # noqa: B018 - boto3 + the DynamoDB client (shared by every store)
        c.conversations  # noqa: B018
        step("init: dynamodb client")
        c.index  # noqa: B018
        step("init: knowledge index client")
        embedder = c.embedder
        step("init: embedder object")
        embedder.embed_query("warm up")  # loads the model
        step("init: embedder model load + 1 embed")
        c.answerer  # noqa: B018
        step("init: answerer")
        from copilot.entrypoints.http.lambda_adapter import lambda_handler_for  # noqa: F401 - apig-wsgi

        step("init: apig-wsgi adapter")

    # --- the first invocation ------------------------------------------------------------------
    _mark("first_turn")
    response = module.lambda_handler(event, None)
    step("first_turn" if mode == "turn" else "first turn (after init)")
    total_ms = (last - _T_RUNTIME) * 1000 - plumbing_ms
    cpu_total_ms = (time.process_time() - _C_RUNTIME) * 1000 - cpu_plumbing_ms
    first_turn_ms = (last - t_imported) * 1000 - plumbing_ms

    _mark("second_turn")
    t = time.perf_counter()
    second = module.lambda_handler(
        post_message_event(config["conversation_id"], config["token"], config["second_text"]),
        None,
    )
    second_ms = (time.perf_counter() - t) * 1000
    _mark("done")

    replies = copilot_replies(response) if response.get("statusCode") == 200 else []
    result = {
        "mode": mode,
        "started_at": _T0,  # perf_counter (CLOCK_MONOTONIC on Linux: comparable with the parent)
        "runtime_setup_ms": (_T_RUNTIME - _T0) * 1000,
        "phases_ms": phases,
        "new_packages_by_step": new_packages,
        "imports_ms": phases["imports"],
        "first_turn_ms": first_turn_ms,
        "total_ms": total_ms,
        "second_turn_ms": second_ms,
        # CPU time of this process (all threads): barely affected by other work on the machine.
        "cpu_imports_ms": cpu_imports_ms,
        "cpu_total_ms": cpu_total_ms,
        "bench_plumbing_ms": plumbing_ms,
        "status": response.get("statusCode"),
        "second_status": second.get("statusCode"),
        "cited": has_citation(response),
        "topics": [m.get("topic") for m in replies],
        "reply": (replies[0]["text"][:120] if replies else response.get("body", "")[:300]),
        "modules_loaded": len(sys.modules),
    }
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
