"""Compact vectors kept beside a chunk (its heading's embedding, its table rows'): half-precision
floats, base64; several vectors are packed one after another.

384 dimensions take 1,024 characters, small enough for a Chroma metadata field; half precision
moves a cosine by less than 0.001.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence
from typing import Any


def pack(vector: Sequence[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}e", *vector)).decode("ascii")


def unpack(packed: str) -> list[float]:
    data = base64.b64decode(packed)
    return list(struct.unpack(f"<{len(data) // 2}e", data))


def pack_all(vectors: Sequence[Sequence[float]]) -> str:
    return pack([x for vector in vectors for x in vector])


def unpack_all(packed: str, dimension: int) -> list[list[float]]:
    values = unpack(packed)
    return [values[i : i + dimension] for i in range(0, len(values), dimension)]


def cosines(query: Sequence[float], vectors: Any) -> Any:
    """The cosine similarity of ``query`` with each of ``vectors`` (a sequence of vectors or a
    2-D array), as a numpy array; 0 against a zero vector. Vectors of another dimension than
    the query's raise ValueError."""
    import numpy as np  # lazily: a cold start that never compares vectors need not load it

    q = np.asarray(query, dtype=np.float64)
    m = np.asarray(vectors, dtype=np.float64)
    if not m.size:
        return np.zeros(0)
    dots = m @ q
    norms = np.linalg.norm(m, axis=1) * np.linalg.norm(q)
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    return float(cosines(a, [b])[0])


def similarities(query: Sequence[float], packed: Sequence[str | None]) -> list[float | None]:
    """For each packed string, the best cosine of the query with the vectors it holds (None
    for no vectors, 0 for vectors of another dimension)."""
    if not any(packed):
        return [None] * len(packed)
    import numpy as np

    size = len(query)
    out: list[float | None] = []
    for p in packed:
        if not p:
            out.append(None)
            continue
        v = np.frombuffer(base64.b64decode(p), dtype="<f2")
        if not v.size or v.size % size:
            out.append(0.0)
            continue
        out.append(float(np.max(cosines(query, v.reshape(-1, size)))))
    return out
