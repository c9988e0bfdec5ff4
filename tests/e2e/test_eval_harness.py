"""The evaluation harness (copilot_dev.evaluation and `copilot eval`) on a tiny fixture pack, against
the whole local stack: fresh copilot, real upload pipeline, one conversation per question."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from copilot.conversation.models import Message
from copilot.knowledge.models import Citation
from copilot_dev import evaluation as ev
from copilot_dev.cli import app
from copilot_dev.client import CopilotClient
from copilot_dev.localstack import LocalStack, StackConfig
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.e2e

PACK = REPO_ROOT / "tests" / "fixtures" / "evalpack"
COPILOT_BIN = Path(sys.executable).parent / "copilot"


@pytest.fixture(scope="module")
def cli_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """`copilot eval --local` in a subprocess, started first so it runs while the other tests
    use their own stack (it starts and stops a private stack of its own)."""
    tmp = tmp_path_factory.mktemp("cli")
    settings = tmp / "settings.json"
    settings.write_text(json.dumps({"messages": {"no_match": "That is not in our lamp pages."}}))
    cmd = [
        str(COPILOT_BIN),
        "eval",
        str(PACK),
        "--local",
        "--concurrency",
        "2",
        "--json",
        str(tmp / "out" / "report.json"),
        "--copilot-settings",
        str(settings),
        "--strictness",
        "high,medium,low",
    ]
    proc = subprocess.Popen(
        cmd, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    yield proc, tmp / "out" / "report.json"
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, cli_run: tuple[subprocess.Popen[str], Path]
) -> Iterator[LocalStack]:
    config = StackConfig.with_free_ports(REPO_ROOT, tmp_path_factory.mktemp("stack"))
    with LocalStack(config) as running:
        yield running


@pytest.fixture(scope="module")
def client(stack: LocalStack) -> CopilotClient:
    return stack.copilot_client()


@pytest.fixture(scope="module")
def pack_with_a_bad_file(tmp_path_factory: pytest.TempPathFactory) -> ev.Pack:
    """The fixture pack plus an empty file, which the ingest function records as failed."""
    root = tmp_path_factory.mktemp("packs") / "evalpack"
    shutil.copytree(PACK, root)
    (root / "docs" / "empty.md").write_text("")
    return ev.load_pack(root)


@pytest.fixture(scope="module")
def report(
    stack: LocalStack, client: CopilotClient, pack_with_a_bad_file: ev.Pack
) -> ev.EvalReport:
    return ev.run_eval(
        client,
        stack.client("s3"),
        stack.config.bucket,
        pack_with_a_bad_file,
        ev.EvalOptions(concurrency=3),
    )


def _by_id(report: ev.EvalReport) -> dict[str, ev.QuestionResult]:
    return {r.id: r for r in report.results}


def test_ingest_reports_time_and_failures(report: ev.EvalReport) -> None:
    ingest = report.ingest
    assert (ingest.files, ingest.indexed) == (6, 5)
    assert [f["doc_key"] for f in ingest.failed] == ["empty.md"]
    assert ingest.failed[0]["reason"]
    assert ingest.not_finished == []
    assert ingest.seconds > 0 and ingest.docs_per_s > 0
    assert report.copilot["name"].startswith("eval evalpack ")


def test_questions_are_scored(report: ev.EvalReport) -> None:
    results = _by_id(report)
    assert list(results) == [f"lumen_q0{i}" for i in range(1, 9)]  # the pack's order

    # The obvious match: the warranty page answers the warranty question, cited first.
    warranty = results["lumen_q01"]
    assert warranty.cited_files and warranty.cited_files[0] == "warranty.md"
    assert warranty.hit_at_1 and warranty.hit_at_5 and warranty.answered
    assert warranty.latency_ms is not None and warranty.latency_ms > 0

    # Off-topic: the copilot's no-match reply, counted in the unanswerable bucket.
    france = results["lumen_q06"]
    assert france.answerable is False
    assert france.outcome == "no_match" and not france.cited_files and not france.hit_at_1
    assert report.copilot["messages"]["no_match"] in france.reply

    # The follow-up: the history's user turn was sent first, its agent turn was not.
    assert results["lumen_q05"].turns == 2
    assert len(results["lumen_q05"].turn_latencies_ms) == 2
    assert all(r.turns == 1 for i, r in results.items() if i != "lumen_q05")
    assert all(r.outcome != "error" for r in results.values())


def test_metrics_follow_from_the_records(report: ev.EvalReport) -> None:
    m = report.metrics()
    by = m["by_answerable"]
    assert (by["answerable"]["questions"], by["unanswerable"]["questions"]) == (5, 2)
    assert by["underspecified"]["questions"] == 1
    assert by["unanswerable"]["outcomes"]["no_match"] >= 1
    assert by["unanswerable"]["with_gold"] == 0 and by["unanswerable"]["recall@1"] is None
    answerable = [r for r in report.results if r.answerable is True]
    assert m["recall@1"] == round(sum(r.hit_at_1 for r in answerable) / 5, 4)
    assert m["recall@5"] == round(sum(r.hit_at_5 for r in answerable) / 5, 4)
    assert m["recall@1"] >= 0.2 and m["recall@5"] >= m["recall@1"]
    assert m["answered_rate_answerable"] == round(sum(r.answered for r in answerable) / 5, 4)
    # every answered answerable question cites its gold file, or it is a wrong-document answer
    wrong = sum(r.answered and not r.hit_at_5 for r in answerable)
    assert m["answered_wrong_doc_rate_answerable"] == round(wrong / 5, 4)
    assert m["answered_wrong_doc_rate_answerable"] + by["answerable"][
        "answered_with_gold_rate"
    ] == pytest.approx(m["answered_rate_answerable"])
    assert m["no_match_rate_unanswerable"] == by["unanswerable"]["no_match_rate"]
    under = m["answered_rate_underspecified"] + m["no_match_rate_underspecified"]
    assert under <= 1
    assert sum(by["underspecified"]["outcomes"].values()) == 1
    lat = m["latency_ms"]
    assert lat["n"] == 8 and 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert m["latency_ms_all_turns"]["n"] == 9
    assert m["http_errors"] == 0


def test_json_report_has_every_question(report: ev.EvalReport, tmp_path: Path) -> None:
    out = tmp_path / "nested" / "eval.json"
    ev.write_json(report, out)
    data = json.loads(out.read_text())
    assert data["pack"] == "evalpack"
    assert data["counts"]["replayed"] == 8 and data["counts"]["http_errors"] == 0
    assert data["ingest"]["failed"][0]["doc_key"] == "empty.md"
    assert data["settings"]["concurrency"] == 3
    assert data["metrics"]["recall@5"] == report.metrics()["recall@5"]
    records = {q["id"]: q for q in data["questions"]}
    assert len(records) == 8
    q1 = records["lumen_q01"]
    assert {
        "answerable",
        "cited_files",
        "hit@1",
        "hit@5",
        "answered",
        "latency_ms",
        "reply",
    } <= set(q1)
    assert q1["hit@1"] is True and q1["cited_files"][0] == "warranty.md"
    assert all(len(q["reply"]) <= ev.REPLY_CHARS for q in records.values())


def test_limit_replays_a_spread_and_keeps_the_order(
    report: ev.EvalReport, client: CopilotClient, pack_with_a_bad_file: ev.Pack
) -> None:
    picked = ev.select(pack_with_a_bad_file.questions, 3)
    assert [q.id for q in picked] == ["lumen_q01", "lumen_q03", "lumen_q06"]
    copilot = client.get_copilot(report.copilot["copilot_id"])
    results = ev.replay(client, copilot, picked, concurrency=3)
    assert [r.id for r in results] == [q.id for q in picked]
    assert results[0].hit_at_1 and results[2].outcome == "no_match"


def test_cli_local_run(cli_run: tuple[subprocess.Popen[str], Path]) -> None:
    proc, report_path = cli_run
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    assert "Recall@1" in output and "Evaluation: evalpack" in output
    data = json.loads(report_path.read_text())
    assert data["settings"]["local"] is True
    assert data["ingest"]["indexed"] == 5 and data["ingest"]["failed"] == []
    assert len(data["questions"]) == 8
    # The extra settings were applied, and the no-match reply is recognised by them.
    no_match = "That is not in our lamp pages."
    assert data["copilot"]["messages"]["no_match"] == no_match
    france = next(q for q in data["questions"] if q["id"] == "lumen_q06")
    assert france["outcome"] == "no_match" and france["reply"] == no_match
    assert data["metrics"]["by_answerable"]["unanswerable"]["questions"] == 2
    # Replayed at each strictness on the one index; the headline figures are medium's.
    assert "By strictness" in output
    levels = data["by_strictness"]
    assert list(levels) == ["high", "medium", "low"] and data["main_strictness"] == "medium"
    assert levels["medium"]["questions"] == data["questions"]
    # The copilot is left at the headline's strictness, and the headline is medium's replay.
    assert data["copilot"]["strictness"] == "medium"
    assert levels["medium"]["metrics"] == data["metrics"]
    answered = {
        level: {q["id"] for q in levels[level]["questions"] if q["answered"]} for level in levels
    }
    # A stricter bar only ever declines more: what high answers, medium and low answer too.
    assert answered["high"] <= answered["medium"] <= answered["low"]
    assert "lumen_q06" not in answered["low"]  # the capital of France, at any strictness


# --- pack validation and scoring rules (no stack needed) ---------------------------------


def _broken_pack(tmp_path: Path) -> Path:
    root = tmp_path / "broken"
    shutil.copytree(PACK, root)
    lines = (root / "questions.jsonl").read_text().splitlines()
    lines[1] = lines[1][:-1]  # line 2: truncated JSON
    lines[2] = lines[2].replace("shipping.md", "nowhere.md")  # line 3: unknown gold file
    lines[3] = lines[3].replace('"answerable": true', '"answerable": "yes"')  # line 4
    lines.append(lines[0])  # line 9: duplicate id
    (root / "questions.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_malformed_pack_names_the_lines(tmp_path: Path) -> None:
    with pytest.raises(ev.EvalError) as caught:
        ev.load_pack(_broken_pack(tmp_path))
    message = str(caught.value)
    assert "4 problem(s)" in message
    assert "questions.jsonl line 2: not valid JSON" in message
    assert "line 3: gold file(s) not in docs/: nowhere.md" in message
    assert "line 4: 'answerable' must be true, false or null" in message
    assert "line 9: duplicate id 'lumen_q01' (first on line 1)" in message

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ev.EvalError, match=r"docs.*missing[\s\S]*questions\.jsonl.*missing"):
        ev.load_pack(empty)


def test_cli_rejects_a_malformed_pack(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["eval", str(_broken_pack(tmp_path)), "--local"])
    assert result.exit_code == 1
    assert "line 2: not valid JSON" in result.output
    assert "Local stack up" not in result.output  # validated before starting anything


def _reply(text: str, topic: str | None, sources: Sequence[str] = ()) -> Message:
    citations = [
        Citation(index=i, title="t", source=s, snippet="s") for i, s in enumerate(sources, 1)
    ]
    return Message(seq=2, role="copilot", text=text, topic=topic, citations=citations)


def test_scoring_rules() -> None:
    no_match = "Sorry, no idea."
    q = ev.Question("q", "?", (), ("b.md",), True)
    customer = Message(seq=1, role="customer", text="?")
    answer = _reply("It is so. [1] [2]", "Knowledge", ["docs/a.md", "b.md", "a.md"])
    assert ev.replies_to_last([customer, answer]) == [answer]
    scored = ev.score(q, [answer], no_match)
    assert scored.cited_files == ["a.md", "b.md"]
    assert (scored.hit_at_1, scored.hit_at_5, scored.outcome) == (False, True, "answered")

    escalate = _reply("Call us.", "Escalate")
    assert ev.classify([_reply(no_match, "No match"), escalate], no_match) == "no_match"
    assert ev.classify([_reply(no_match, None)], no_match) == "no_match"
    assert ev.classify([], no_match) == "no_match"
    assert ev.classify([_reply("Hello!", "Greeting")], no_match) == "other"
    assert ev.percentile([1, 2, 3, 4], 50) == 2.5 and ev.percentile([], 50) is None


def test_calibration_sets_the_bar_that_declines_the_unanswerable_questions(
    client: CopilotClient, report: ev.EvalReport
) -> None:
    """`copilot eval --calibrate`'s step over HTTP: the copilot measures the labelled
    questions, the lowest bar declining all unanswerable ones (at the margin weight that
    answers most there) is set as its answer_bar, and the replayed turns then do what the
    measures said they would."""
    copilot = client.get_copilot(report.copilot["copilot_id"])
    questions = ev.load_pack(PACK).questions
    result = ev.calibrate(client, copilot, questions, decline=1.0, concurrency=2)
    assert result["questions"] == 8 and result["unanswerable"] == 2
    bar, at_bar = result["answer_bar"], result["at_answer_bar"]
    assert bar is not None and at_bar["declined_unanswerable"] == 1.0
    assert all(r["declined_unanswerable"] < 1.0 for r in result["sweep"] if r["bar"] < bar)
    weight = result["answer_margin_weight"]
    assert at_bar["margin_weight"] == weight and all(
        r["margin_weight"] == weight for r in result["sweep"]
    )
    calibrated = client.get_copilot(copilot.copilot_id)
    assert calibrated.answer_bar == bar and (calibrated.answer_margin_weight or 0.0) == weight

    replayed = {r.id: r for r in ev.replay(client, calibrated, questions, concurrency=2)}
    assert replayed["lumen_q06"].outcome == replayed["lumen_q07"].outcome == "no_match"
    answerable = [r for r in replayed.values() if r.answerable]
    with_gold = sum(r.answered and r.hit_at_5 for r in answerable) / len(answerable)
    assert with_gold == at_bar["answered_with_gold"]


def test_strictness_levels_are_checked() -> None:
    assert ev.parse_strictness("low, high") == ["low", "high"] and ev.parse_strictness(None) == []
    assert ev.main_strictness(["high", "low"]) == "high"
    assert ev.main_strictness(["low", "medium"]) == "medium"
    for bad in ("lax", "low,low", ",", "medium,strict"):
        with pytest.raises(ev.EvalError, match="--strictness takes"):
            ev.parse_strictness(bad)
