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

import sys  # noqa: E402 - already loaded by the interpreter, free


def _mark(phase: str) -> None:
    sys.stderr.write(f"@@phase {phase}\n")
    sys.stderr.flush()


def main() -> int:
    main_path, mode, raw_config = sys.argv[1], sys.argv[2], sys.argv[3]
    phases: dict[str, float] = {}
    last = _T0

    def step(name: str) -> None:
        nonlocal last
        now = time.perf_counter()
        phases[name] = (now - last) * 1000
        last = now

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

    # --- bench plumbing (standard library only; not part of the function's cost) -----------
    _mark("bench")
    import json
    import os

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _apigw import copilot_replies, has_citation, post_message_event

    config = json.loads(raw_config)
    event = post_message_event(config["conversation_id"], config["token"], config["text"])
    plumbing_ms = (time.perf_counter() - last) * 1000
    last = time.perf_counter()

    if mode == "phased":
        _mark("init")
        from copilot import bootstrap

        c = bootstrap.container()
        step("init: settings + container")
        import boto3  # noqa: F401

        step("init: import boto3")
        c.copilots  # noqa: B018 - builds the DynamoDB client (shared by both stores)
        c.conversations  # noqa: B018
        step("init: dynamodb client")
        import chromadb  # noqa: F401

        step("init: import chromadb")
        c.index  # noqa: B018 - chromadb.HttpClient
        step("init: chroma client")
        import wordllama  # noqa: F401

        step("init: import wordllama")
        c.embedder.embed_query("warm up")  # loads the model file
        step("init: embedder load")
        from copilot.lambda_http import lambda_handler_for  # noqa: F401 - apig-wsgi

        step("init: apig-wsgi")

    # --- the first invocation ------------------------------------------------------------------
    _mark("first_turn")
    response = module.lambda_handler(event, None)
    step("first_turn" if mode == "turn" else "first turn (after init)")
    total_ms = (last - _T0) * 1000 - plumbing_ms
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
        "phases_ms": phases,
        "imports_ms": phases["imports"],
        "first_turn_ms": first_turn_ms,
        "total_ms": total_ms,
        "second_turn_ms": second_ms,
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
