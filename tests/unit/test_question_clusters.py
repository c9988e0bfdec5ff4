"""Unanswered questions grouped by meaning (copilot.analytics.clusters), with the real embedders."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import pytest
from langchain_core.embeddings import Embeddings

from copilot.adapters.providers.offline import MiniLMEmbeddings, WordLlamaEmbeddings
from copilot.analytics.clusters import (
    WORDLLAMA_THRESHOLD,
    QuestionCluster,
    cluster_questions,
    normalise,
)

# Paraphrase groups, customer-support style. With MiniLM they come out exactly as these groups
# at every threshold from 0.35 to 0.55 (the default is 0.45), so the tests do not hang on it.
GROUPS = {
    "refund": [
        "How do I get a refund?",
        "Can I get my money back?",
        "I want a refund for my order",
        "Can you refund me?",
    ],
    "hours": [
        "What are your opening hours?",
        "When do you open?",
        "What time does the store close?",
        "What are your business hours?",
    ],
    "canada": [
        "Do you ship to Canada?",
        "Can I order from Canada?",
        "Is shipping available to Canada?",
        "Can you send my order to Canada?",
    ],
    "password": [
        "How do I reset my password?",
        "I forgot my password",
        "Can't log in, forgot password",
        "I need a new password",
    ],
    "cancel_subscription": [
        "How do I cancel my subscription?",
        "I want to cancel my membership",
        "Cancel my subscription please",
        "How do I end my subscription?",
    ],
    "warranty": [
        "What does the warranty cover?",
        "How long is the warranty?",
        "Is my product still under warranty?",
        "How do I make a warranty claim?",
    ],
    "stores": [
        "Where are your stores?",
        "Is there a shop near me?",
        "Where can I find your nearest store?",
        "What is the address of your shop?",
    ],
    "person": [
        "Can I speak to a person?",
        "I want to talk to a human",
        "Is there a real person I can talk to?",
        "Can I speak to a real person?",
    ],
}
ONE_OFFS = [
    "Is the jacket waterproof?",
    "Do you have job openings?",
    "Are your products vegan?",
    "How do I assemble the desk?",
    "Do you sell gift cards?",
]


class CountingEmbeddings(Embeddings):
    """An embedder, recording each ``embed_documents`` call."""

    def __init__(self, inner: Embeddings) -> None:
        self.inner = inner
        self.calls: list[list[str]] = []

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)


class FixedEmbeddings(Embeddings):
    """Vectors given per text: for exact ties."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.vectors[t] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.vectors[text]


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbeddings:
    return MiniLMEmbeddings()


def asked(times: Sequence[int], questions: Sequence[str]) -> list[str]:
    """Each question repeated as many times as it was asked."""
    return [q for n, q in zip(times, questions, strict=True) for _ in range(n)]


def by_members(clusters: list[QuestionCluster]) -> dict[frozenset[str], int]:
    return {frozenset(c.examples): c.count for c in clusters}


# Asked 4, 3, 2 and 1 times within each group, the group's i-th group one time more in total.
TIMES = [4, 3, 2, 1]


def raw_questions() -> list[str]:
    questions = []
    for i, group in enumerate(GROUPS.values()):
        questions += asked(TIMES, group) + [group[-1]] * i
    return questions + ONE_OFFS


def test_paraphrases_come_out_as_their_groups_with_repeats_counted(
    minilm: MiniLMEmbeddings,
) -> None:
    clusters = cluster_questions(raw_questions(), minilm, examples=10, limit=100)
    expected = {frozenset(group): sum(TIMES) + i for i, group in enumerate(GROUPS.values())} | {
        frozenset([q]): 1 for q in ONE_OFFS
    }
    assert by_members(clusters) == expected
    assert sum(c.count for c in clusters) == len(raw_questions())


def test_examples_are_distinct_most_frequent_first_and_start_with_the_label(
    minilm: MiniLMEmbeddings,
) -> None:
    refunds = GROUPS["refund"]
    variants = ["can i get my money back", "  HOW do I get a refund "]
    (cluster,) = cluster_questions(asked([2, 5, 1, 4], refunds) + variants, minilm)
    assert cluster.count == 14
    # Asked 6 times (with its variant), 4, 3 (with its variant, shown as asked most) and 1.
    by_frequency = [refunds[1], refunds[3], refunds[0], refunds[2]]
    assert cluster.label in refunds
    assert cluster.examples == [
        cluster.label,
        *[q for q in by_frequency if q != cluster.label][:2],
    ]


def test_the_label_is_the_medoid(minilm: MiniLMEmbeddings) -> None:
    for group in GROUPS.values():
        (cluster,) = cluster_questions(group, minilm, examples=10)
        vectors = np.array(minilm.embed_documents(group))
        medoid = group[int(np.argmax((vectors @ vectors.T).sum(axis=1)))]
        assert (cluster.label, cluster.count) == (medoid, len(group))
    # Weighted by how often each was asked: the question asked most pulls the centre to it.
    person = GROUPS["person"]
    (cluster,) = cluster_questions(asked([1, 1, 1, 20], person), minilm)
    assert cluster.label == person[3]


def test_unrelated_questions_do_not_merge(minilm: MiniLMEmbeddings) -> None:
    unrelated = [*ONE_OFFS, *(group[0] for group in GROUPS.values())]
    clusters = cluster_questions(unrelated, minilm, limit=100)
    assert sorted(c.label for c in clusters) == sorted(unrelated)
    assert all(c.count == 1 and c.examples == [c.label] for c in clusters)


def test_each_distinct_question_is_embedded_once_in_one_call(minilm: MiniLMEmbeddings) -> None:
    embedder = CountingEmbeddings(minilm)
    questions = ["Refund?", "refund", "refund", "  REFUND  ", "refund!!", "Do you ship to Canada?"]
    clusters = cluster_questions(questions * 3, embedder)
    assert embedder.calls == [["refund", "Do you ship to Canada?"]]
    assert by_members(clusters) == {
        frozenset(["refund"]): 15,
        frozenset(["Do you ship to Canada?"]): 3,
    }


def test_normalising_casefolds_collapses_whitespace_and_strips_final_punctuation() -> None:
    assert normalise("  How do I get a\tREFUND ?? ") == "how do i get a refund"
    assert normalise("Straße…") == "strasse"
    assert normalise("Is it 50%?") == "is it 50%"
    assert normalise("?!") == ""


def test_no_questions_no_clusters(minilm: MiniLMEmbeddings) -> None:
    embedder = CountingEmbeddings(minilm)
    assert cluster_questions([], embedder) == []
    assert cluster_questions(["???", "  "], embedder) == []
    assert embedder.calls == []


def test_limit_keeps_the_biggest_groups_biggest_first(minilm: MiniLMEmbeddings) -> None:
    clusters = cluster_questions(raw_questions(), minilm, limit=3)
    assert len(clusters) == 3
    # The groups asked most: the last three, each one more time than the one before.
    assert [c.count for c in clusters] == [sum(TIMES) + 7, sum(TIMES) + 6, sum(TIMES) + 5]
    assert {c.label for c in clusters} <= set(
        GROUPS["person"] + GROUPS["stores"] + GROUPS["warranty"]
    )
    assert cluster_questions(raw_questions(), minilm, limit=0) == []


def test_equal_counts_are_ordered_by_label(minilm: MiniLMEmbeddings) -> None:
    clusters = cluster_questions(ONE_OFFS, minilm)
    assert [c.label for c in clusters] == sorted(ONE_OFFS)


def test_only_the_most_frequent_distinct_questions_are_grouped(minilm: MiniLMEmbeddings) -> None:
    embedder = CountingEmbeddings(minilm)
    questions = asked(
        [3, 2, 1], ["Do you ship to Canada?", "I forgot my password", "Can I order from Canada?"]
    )
    clusters = cluster_questions(questions, embedder, max_distinct=2)
    assert len(embedder.calls[0]) == 2
    assert by_members(clusters) == {
        frozenset(["Do you ship to Canada?"]): 3,
        frozenset(["I forgot my password"]): 2,
    }


def test_the_same_questions_give_the_same_clusters_in_any_order(minilm: MiniLMEmbeddings) -> None:
    questions = raw_questions()
    first = cluster_questions(questions, minilm, limit=100)
    assert cluster_questions(questions, minilm, limit=100) == first
    random.Random(7).shuffle(questions)
    assert cluster_questions(questions, minilm, limit=100) == first


def test_exact_ties_go_to_the_more_frequent_question_then_the_smaller_text() -> None:
    same = [1.0, 0.0]
    embedder = FixedEmbeddings({"b": same, "a": same, "c": same, "d": [0.0, 1.0]})
    (group, alone) = cluster_questions(["c", "b", "a", "d"], embedder, threshold=0.9)
    assert group == QuestionCluster(label="a", count=3, examples=["a", "b", "c"])
    assert alone == QuestionCluster(label="d", count=1, examples=["d"])
    (group, _) = cluster_questions(["c", "b", "a", "c", "d"], embedder, threshold=0.9)
    assert group.label == "c" and group.examples == ["c", "a", "b"]


def test_a_higher_threshold_gives_tighter_groups(minilm: MiniLMEmbeddings) -> None:
    loose = cluster_questions(raw_questions(), minilm, limit=100)
    strict = cluster_questions(raw_questions(), minilm, threshold=0.99, limit=100)
    assert len(strict) == len(set(map(normalise, raw_questions()))) > len(loose)


def test_wordllama_groups_paraphrases_at_its_own_threshold() -> None:
    # WordLlama is static and more literal ("open" and "job openings" are near): the groups it
    # keeps apart at its threshold.
    groups = [GROUPS[k] for k in ("refund", "canada", "password", "warranty", "person")]
    one_offs = [q for q in ONE_OFFS if q != "Do you have job openings?"]
    questions = [q for group in groups for q in group] + one_offs
    clusters = cluster_questions(
        questions, WordLlamaEmbeddings(), threshold=WORDLLAMA_THRESHOLD, examples=10, limit=100
    )
    assert by_members(clusters) == {frozenset(g): 4 for g in groups} | {
        frozenset([q]): 1 for q in one_offs
    }


def test_bad_arguments_are_refused(minilm: MiniLMEmbeddings) -> None:
    with pytest.raises(ValueError):
        cluster_questions(["a"], minilm, examples=0)
    with pytest.raises(ValueError):
        cluster_questions(["a"], minilm, limit=-1)
