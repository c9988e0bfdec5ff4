"""Calibrating a copilot's answer bar on labelled questions: the admin route measures them as
turns would be answered, the sweep and the recommendation follow from the measures, and the
bar it sets is the one the copilot answers by (chat function under functions-framework,
in-memory stores, the offline embedder)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from copilot.admin.models import Copilot, CopilotPatch
from copilot.bootstrap import Container, set_container
from copilot.config import Settings
from copilot.knowledge.answer import THRESHOLDS, AnswerPolicy
from copilot.knowledge.calibration import (
    MAX_BATCH,
    LabelledQuestion,
    Measured,
    MeasuredSource,
    choose,
    recommend,
    sweep,
)
from copilot_dev.fakes import in_memory_container
from tests.conftest import REPO_ROOT
from tests.unit.test_knowledge import make_copilot

ADMIN = {"X-Admin-Key": "admin-secret"}
DEMO = Path(__file__).resolve().parents[2] / "infra" / "demo" / "knowledge"
PAGES = ("account-and-password.md", "shipping.md", "returns-and-refunds.md")

DIRECT = "How long is the password reset link valid?"
QUESTIONS: list[dict[str, Any]] = [
    {
        "question": DIRECT,
        "answerable": True,
        "gold_files": ["account-and-password.md"],
    },
    {
        "question": "how long is it good for",
        "history": ["i forgot my password what do i do"],
        "answerable": True,
        "gold_files": ["account-and-password.md"],
    },
    {"question": "Do you sell skateboards for children?", "answerable": False},
    {"question": "Can I pay for a repair in bitcoin?", "answerable": False},
]


@pytest.fixture(scope="module")
def container() -> Container:
    return in_memory_container(Settings(bucket="kb", admin_api_key="admin-secret"))


@pytest.fixture(scope="module")
def shop(container: Container) -> Copilot:
    return make_copilot(container, {name: (DEMO / name).read_text() for name in PAGES})


@pytest.fixture
def client(container: Container) -> Iterator[Any]:
    from functions_framework import create_app

    set_container(container)
    yield create_app("chat", str(REPO_ROOT / "functions" / "chat" / "main.py")).test_client()
    set_container(None)


def measured(client: Any, copilot: Copilot, questions: list[dict[str, Any]]) -> dict[str, Any]:
    response = client.post(
        f"/admin/copilots/{copilot.copilot_id}/calibration",
        json={"questions": questions},
        headers=ADMIN,
    )
    assert response.status_code == 200, response.json
    return dict(response.json)


def test_labelled_questions_are_measured_as_turns(client: Any, shop: Copilot) -> None:
    body = measured(client, shop, QUESTIONS)
    assert body["bar_in_use"] == THRESHOLDS["medium"]
    direct, follow_up, skateboards, bitcoin = body["measured"]
    assert direct["sources"][0]["file"] == "account-and-password.md"
    # The follow-up is measured in its conversation: alone it would not be about passwords.
    assert follow_up["sources"][0]["file"] == "account-and-password.md"
    alone = measured(client, shop, [{**QUESTIONS[1], "history": []}])["measured"][0]
    assert follow_up["confidence"] > alone["confidence"]
    assert min(direct["confidence"], follow_up["confidence"]) > max(
        skateboards["confidence"], bitcoin["confidence"]
    )
    # Sources are best first; the first source's confidence is the gate's.
    assert direct["sources"][0]["confidence"] == pytest.approx(direct["confidence"], abs=1e-3)


def test_the_recommended_bar_is_the_one_the_copilot_then_answers_by(
    client: Any, container: Container, shop: Copilot
) -> None:
    labelled = [LabelledQuestion.model_validate(q) for q in QUESTIONS]
    measures = [Measured.model_validate(m) for m in measured(client, shop, QUESTIONS)["measured"]]
    rows = sweep(labelled, measures)
    chosen = recommend(rows, decline=1.0)
    assert chosen is not None and chosen.declined_unanswerable == 1.0
    assert chosen.answered_with_gold == 1.0 and chosen.answered_wrong_doc == 0.0
    assert all(
        (r.declined_unanswerable or 0) < 1.0 for r in rows if r.bar < chosen.bar
    )  # the lowest

    patched = client.patch(
        f"/admin/copilots/{shop.copilot_id}", json={"answer_bar": chosen.bar}, headers=ADMIN
    )
    assert patched.status_code == 200 and patched.json["answer_bar"] == chosen.bar
    calibrated = container.admin.get(shop.copilot_id)
    policy = AnswerPolicy()
    assert policy.bar(calibrated) == chosen.bar
    high = calibrated.model_copy(update={"strictness": "high"})
    assert policy.bar(high) == pytest.approx(chosen.bar + THRESHOLDS["high"] - THRESHOLDS["medium"])
    assert measured(client, calibrated, QUESTIONS[:1])["bar_in_use"] == chosen.bar

    # A bar above the direct question's confidence makes the copilot decline it.
    direct = measures[0].confidence
    above = round(min(direct + 0.05, 0.95), 2)
    container.admin.update(shop.copilot_id, CopilotPatch(answer_bar=above))
    started = container.chat.start(shop.copilot_id)
    turn = container.chat.post(started.conversation_id, started.token, DIRECT)
    assert not turn.messages[-1].citations
    # null goes back to the default bar, and the question is answered again.
    reset = client.patch(
        f"/admin/copilots/{shop.copilot_id}", json={"answer_bar": None}, headers=ADMIN
    )
    assert reset.status_code == 200 and reset.json["answer_bar"] is None
    started = container.chat.start(shop.copilot_id)
    turn = container.chat.post(started.conversation_id, started.token, DIRECT)
    assert turn.messages[-1].citations[0].source == "account-and-password.md"


def test_bad_calibration_requests_are_refused_with_reasons(client: Any, shop: Copilot) -> None:
    url = f"/admin/copilots/{shop.copilot_id}/calibration"
    one = {"questions": QUESTIONS[:1]}
    assert client.post(url, json=one).status_code == 401
    assert client.post(url, json=one, headers={"X-Admin-Key": "wrong"}).status_code == 403
    too_many = {"questions": QUESTIONS[:1] * (MAX_BATCH + 1)}
    response = client.post(url, json=too_many, headers=ADMIN)
    assert response.status_code == 400 and "questions" in str(response.json)
    unlabelled = {"questions": [{"question": "Where is my order?"}]}
    response = client.post(url, json=unlabelled, headers=ADMIN)
    assert response.status_code == 400 and "answerable" in str(response.json)
    missing = client.post("/admin/copilots/nope/calibration", json=one, headers=ADMIN)
    assert missing.status_code == 404
    out_of_range = client.patch(
        f"/admin/copilots/{shop.copilot_id}", json={"answer_bar": 1.5}, headers=ADMIN
    )
    assert out_of_range.status_code == 400 and "answer_bar" in str(out_of_range.json)


def test_the_sweep_counts_what_each_bar_would_cite() -> None:
    labelled = [
        LabelledQuestion(question="a", answerable=True, gold_files=["docs/gold.md"]),
        LabelledQuestion(question="b", answerable=True, gold_files=["gold.md"]),
        LabelledQuestion(question="c", answerable=False),
        LabelledQuestion(question="d", answerable=None),  # not counted
    ]
    measures = [
        # best is another doc; the gold one is cited beside it only while the bar <= 0.5
        Measured(
            confidence=0.7,
            sources=[
                MeasuredSource(file="other.md", confidence=0.7),
                MeasuredSource(file="gold.md", confidence=0.5),
            ],
        ),
        Measured(confidence=0.6, sources=[MeasuredSource(file="kb/gold.md", confidence=0.6)]),
        Measured(confidence=0.55, sources=[MeasuredSource(file="x.md", confidence=0.55)]),
        Measured(confidence=0.9, sources=[MeasuredSource(file="y.md", confidence=0.9)]),
    ]
    rows = {r.bar: r for r in sweep(labelled, measures, bars=[0.5, 0.56, 0.65, 0.75])}
    assert rows[0.5].answered_with_gold == 1.0 and rows[0.5].declined_unanswerable == 0.0
    assert rows[0.56].answered_with_gold == 0.5 and rows[0.56].answered_wrong_doc == 0.5
    assert rows[0.56].declined_unanswerable == 1.0
    assert rows[0.65].answered == 0.5 and rows[0.65].answered_wrong_doc == 0.5
    assert rows[0.75].answered == 0.0
    assert recommend(list(rows.values()), decline=1.0) == rows[0.56]
    assert recommend(sweep(labelled[:2], measures[:2])) is None  # nothing unanswerable


def test_the_margin_weight_is_chosen_where_the_lead_tells_answerable_from_not() -> None:
    labelled = [
        LabelledQuestion(question="a", answerable=True, gold_files=["gold.md"]),
        LabelledQuestion(question="c", answerable=False),
    ]
    # The answerable question's entry stands out (lead 0.2); the unanswerable one fits
    # several entries about equally (lead 0) but a little better than the other's best.
    distinct = Measured(
        confidence=0.55, margin=0.2, sources=[MeasuredSource(file="gold.md", confidence=0.55)]
    )
    alike = Measured(
        confidence=0.6, margin=0.0, sources=[MeasuredSource(file="x.md", confidence=0.6)]
    )
    at_zero = recommend(sweep(labelled, [distinct, alike]), decline=1.0)
    assert at_zero is not None and at_zero.answered_with_gold == 0.0  # declines both
    chosen, rows = choose(labelled, [distinct, alike], decline=1.0)
    assert chosen is not None and chosen.margin_weight > 0
    assert chosen.answered_with_gold == 1.0 and chosen.declined_unanswerable == 1.0
    assert all(r.margin_weight == chosen.margin_weight for r in rows)
    assert chosen.bar > 0.6 and 0.55 + chosen.margin_weight * 0.2 >= chosen.bar
    # Where the lead does not help, the weight stays 0 (ties go to the smaller weight).
    flat = [distinct.model_copy(update={"margin": 0.0}), alike]
    assert choose(labelled, flat, decline=1.0)[0].margin_weight == 0.0  # type: ignore[union-attr]
    # Nothing unanswerable: no choice, and the sweep at weight 0.
    none, rows = choose(labelled[:1], [distinct])
    assert none is None and rows and all(r.margin_weight == 0.0 for r in rows)


def test_the_margin_weight_moves_the_gate_the_copilot_answers_by(
    client: Any, container: Container
) -> None:
    shop = make_copilot(container, {name: (DEMO / name).read_text() for name in PAGES})
    direct = measured(client, shop, QUESTIONS[:1])["measured"][0]
    lead = direct["margin"]
    assert 0.01 < lead <= AnswerPolicy().margin_cap  # the password page stands out
    bar = round(direct["confidence"] + lead / 2, 4)  # above the passage, below passage + lead

    def cited(weight: float) -> list[str]:
        patch = {"answer_bar": bar, "answer_margin_weight": weight}
        response = client.patch(f"/admin/copilots/{shop.copilot_id}", json=patch, headers=ADMIN)
        assert response.status_code == 200 and response.json["answer_margin_weight"] == weight
        started = container.chat.start(shop.copilot_id)
        turn = container.chat.post(started.conversation_id, started.token, DIRECT)
        return [c.source for c in turn.messages[-1].citations]

    assert cited(0.0) == []
    assert cited(1.0)[:1] == ["account-and-password.md"]
    assert measured(client, shop, QUESTIONS[:1])["margin_weight_in_use"] == 1.0
    reset = client.patch(
        f"/admin/copilots/{shop.copilot_id}",
        json={"answer_margin_weight": None, "answer_bar": None},
        headers=ADMIN,
    )
    assert reset.status_code == 200 and reset.json["answer_margin_weight"] is None
    out_of_range = client.patch(
        f"/admin/copilots/{shop.copilot_id}", json={"answer_margin_weight": 2}, headers=ADMIN
    )
    assert out_of_range.status_code == 400 and "answer_margin_weight" in str(out_of_range.json)
