"""The offline embedders: shipped in their wheels, loaded without any download."""

from __future__ import annotations

import math

import pytest

from copilot.adapters.providers.offline import MiniLMEmbeddings, WordLlamaEmbeddings


def cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbeddings:
    return MiniLMEmbeddings()


def test_minilm_gives_unit_vectors_of_384_dimensions_in_input_order(
    minilm: MiniLMEmbeddings,
) -> None:
    texts = ["a much longer text " * 20, "short", "How do I reset my password?"]
    vectors = minilm.embed_documents(texts)
    assert [len(v) for v in vectors] == [384, 384, 384]
    assert all(math.isclose(math.sqrt(cos(v, v)), 1.0, abs_tol=1e-5) for v in vectors)
    # Batching sorts by length: each vector must still belong to its own text.
    assert cos(vectors[2], minilm.embed_query(texts[2])) == pytest.approx(1.0, abs=1e-5)
    assert minilm.embed_documents([]) == []


def test_minilm_ranks_the_passage_that_answers_first(minilm: MiniLMEmbeddings) -> None:
    question = minilm.embed_query("I forgot my password, how do I get back into my account?")
    answer, neighbour = minilm.embed_documents(
        [
            "Resetting your password: we email you a reset link that signs you in.",
            "Changing your account email address: open the account settings page.",
        ]
    )
    assert cos(question, answer) > cos(question, neighbour) + 0.2


def test_minilm_truncates_long_input_instead_of_failing(minilm: MiniLMEmbeddings) -> None:
    long = " ".join(f"word{i}" for i in range(5000))
    assert len(minilm.embed_query(long)) == 384


def test_wordllama_stays_available_as_the_fast_option() -> None:
    a, b = WordLlamaEmbeddings().embed_documents(["reset my password", "password reset"])
    assert len(a) == 256 and cos(a, b) > 0.5


def test_the_container_prewarms_the_model_once_in_the_background() -> None:
    import threading

    from copilot.bootstrap import Container
    from copilot.config import Settings

    container = Container(Settings(embedder="minilm"))
    embedder = container.embedder
    assert isinstance(embedder, MiniLMEmbeddings) and embedder._session is None
    # Containers of earlier tests in this process may still be warming their own models.
    earlier = {t for t in threading.enumerate() if t.name == "prewarm-models"}
    container.prewarm_models()
    container.prewarm_models()  # idempotent: one thread per container
    threads = [t for t in threading.enumerate() if t.name == "prewarm-models" and t not in earlier]
    assert len(threads) <= 1
    for t in threads:
        t.join(timeout=30)
    assert embedder._session is not None
