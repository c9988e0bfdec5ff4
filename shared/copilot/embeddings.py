"""Embedding models behind LangChain's ``Embeddings`` interface."""

from __future__ import annotations

import threading
from typing import Any

from langchain_core.embeddings import Embeddings


class WordLlamaEmbeddings(Embeddings):
    """Offline default: WordLlama's static embeddings, shipped inside the ``wordllama`` wheel.

    No download ever happens: the model file is read from the installed package folder.
    """

    model_name = "wordllama-l2-supercat-256"

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
