"""Compact vectors kept beside a chunk (its heading's embedding, its table rows'): half-precision
floats, base64; several vectors are packed one after another.

384 dimensions take 1,024 characters, small enough for a Chroma metadata field; half precision
moves a cosine by less than 0.001.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence


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


def similarities(query: Sequence[float], packed: Sequence[str | None]) -> list[float | None]:
    """For each packed string, the best cosine of the query with the vectors it holds (None
    for no vectors, 0 for vectors of another dimension)."""
    if not any(packed):
        return [None] * len(packed)
    import numpy as np

    q = np.asarray(query, dtype=np.float32)
    q_norm = float(np.linalg.norm(q)) or 1.0
    out: list[float | None] = []
    for p in packed:
        if not p:
            out.append(None)
            continue
        v = np.frombuffer(base64.b64decode(p), dtype="<f2").astype(np.float32)
        if not v.size or v.size % q.size:
            out.append(0.0)
            continue
        v = v.reshape(-1, q.size)
        norms = np.linalg.norm(v, axis=1)
        norms[norms == 0] = 1.0
        out.append(float(np.max(v @ q / (norms * q_norm))))
    return out
