"""Compact vectors kept beside a chunk (its heading's embedding): half-precision floats, base64.

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


def similarities(query: Sequence[float], packed: Sequence[str]) -> list[float]:
    """Cosine of the query with each packed vector (0 for one of another dimension)."""
    if not packed:
        return []
    import numpy as np

    q = np.asarray(query, dtype=np.float32)
    q_norm = float(np.linalg.norm(q)) or 1.0
    out = []
    for p in packed:
        v = np.frombuffer(base64.b64decode(p), dtype="<f2").astype(np.float32)
        if v.shape != q.shape:
            out.append(0.0)
            continue
        out.append(float(v @ q) / (q_norm * (float(np.linalg.norm(v)) or 1.0)))
    return out
