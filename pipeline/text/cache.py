"""A content-addressed cache of prompt embeddings, on local disk or any fsspec URI (a team bucket).

An entry is keyed by :func:`content_hash` of the encoder's model id and the exact prompts, so switching
back to an earlier model or template, or a colleague's run with the same choice, reuses the embeddings
instead of loading a language model. Entries are Parquet files ``<root>/<key[:2]>/<key>.parquet``
(prompt, embedding) written to a temporary name and renamed into place: a reader never sees half an
entry (on object stores a single PUT is atomic already). Entries are immutable, so concurrent writers of
the same key write the same bytes.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import uuid
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import storage

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the entry layout or the meaning of a key changes


class Encoder(Protocol):
    model_id: str

    def encode(self, prompts: Sequence[str], batch_size: int = ..., progress: bool = ...) -> np.ndarray: ...


def content_hash(model_id: str, prompts: Sequence[str]) -> str:
    """sha256 (hex) of the cache format, model id and prompts, in order."""
    payload = json.dumps({"format": CACHE_FORMAT, "model_id": model_id, "prompts": list(prompts)},
                         ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Embeddings by content hash under ``location`` (a local directory or fsspec URI)."""

    def __init__(self, location: str):
        if not location:
            raise ValueError("cache: empty location; give a directory or fsspec URI (or disable the cache)")
        self.location = os.path.expanduser(str(location)) if "://" not in str(location) else str(location)
        # Driver check, store settings and a probe of bucket and credentials (fails in seconds, naming it).
        self.fs, self.root = storage.filesystem(self.location, "cache")
        storage.check_access(self.location, "cache")

    def path(self, key: str) -> str:
        return f"{self.root.rstrip('/')}/{key[:2]}/{key}.parquet"

    def __contains__(self, key: str) -> bool:
        return self.fs.exists(self.path(key))

    def get(self, key: str, prompts: Sequence[str] | None = None) -> np.ndarray | None:
        """The [N, D] float32 embeddings stored under ``key``, or None on a miss.

        An unreadable entry, or one whose prompts differ from ``prompts``, counts as a miss (with a
        warning) and is overwritten by the next :meth:`put`.
        """
        path = self.path(key)
        try:
            with self.fs.open(path, "rb") as f:
                table = pq.read_table(f)
        except FileNotFoundError:
            return None
        except (OSError, pa.ArrowException) as e:
            log.warning("embedding cache entry %s is unreadable (%s): recomputing", path, e)
            return None
        if prompts is not None and table.column("prompt").to_pylist() != list(prompts):
            log.warning("embedding cache entry %s holds other prompts than its key says: recomputing", path)
            return None
        emb = table.column("embedding").combine_chunks()
        dim = emb.type.list_size if pa.types.is_fixed_size_list(emb.type) else len(emb[0])
        return emb.flatten().to_numpy().astype(np.float32).reshape(len(table), dim)

    def put(self, key: str, embeddings: np.ndarray, prompts: Sequence[str], model_id: str) -> str:
        """Stores an entry atomically (temporary name + rename); returns its path."""
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or len(embeddings) != len(prompts):
            raise ValueError(f"embeddings of shape {embeddings.shape} do not match {len(prompts)} prompts")
        flat = pa.array(embeddings.reshape(-1), pa.float32())
        table = pa.table({"prompt": pa.array(list(prompts), pa.string()),
                          "embedding": pa.FixedSizeListArray.from_arrays(flat, embeddings.shape[1])})
        table = table.replace_schema_metadata({"model_id": model_id, "content_hash": key,
                                               "cache_format": str(CACHE_FORMAT)})
        buf = io.BytesIO()
        pq.write_table(table, buf)
        path = self.path(key)
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        try:
            with self.fs.open(tmp, "wb") as f:
                f.write(buf.getvalue())
            self.fs.mv(tmp, path)
        finally:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)
        return path


def embed_prompts(encoder: Encoder, prompts: Sequence[str], cache: EmbeddingCache | None,
                  batch_size: int = 64, progress: bool = True) -> tuple[np.ndarray, str, bool]:
    """Embeddings of ``prompts`` from ``cache`` when present, else from ``encoder`` (then stored).

    Returns:
        (embeddings [N, D] float32, content hash, cache hit). On a hit the encoder is never loaded.
    """
    key = content_hash(encoder.model_id, prompts)
    if cache is not None:
        hit = cache.get(key, prompts)
        if hit is not None:
            log.info("embedding cache hit %s (%s)", key[:12], cache.path(key))
            return hit, key, True
    emb = encoder.encode(prompts, batch_size=batch_size, progress=progress)
    if cache is not None:
        log.info("embedding cache store %s", cache.put(key, emb, prompts, encoder.model_id))
    return emb, key, False
