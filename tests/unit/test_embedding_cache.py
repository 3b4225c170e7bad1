"""The content-addressed embedding cache: keys, local and fsspec entries, atomicity, and that a hit
never loads a model (a real tiny open_clip encoder; the loader is wrapped to count calls)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid

import numpy as np
import pytest

from pipeline.text import encoders as text_encoders
from pipeline.text.cache import EmbeddingCache, content_hash, embed_prompts
from pipeline.text.encoders import text_encoder

PROMPTS = ["a person riding a bicycle", "a person riding a motorcycle", "a person eating a pizza"]


def unit_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def load_calls(monkeypatch) -> list[str]:
    """Wraps the real open_clip loader so the test sees every weight load (the loader still runs)."""
    calls: list[str] = []
    real = text_encoders.LOADERS["open_clip"]

    def counting(enc):
        calls.append(enc.model_id)
        return real(enc)

    monkeypatch.setitem(text_encoders.LOADERS, "open_clip", counting)
    return calls


def test_content_hash_depends_on_model_and_exact_prompts():
    key = content_hash("m", PROMPTS)
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    # the same key in another process (a cache is shared across runs: no per-process hash seed) and for
    # the prompts as a tuple (the order and text matter, not the container)
    other = subprocess.run([sys.executable, "-c", "from pipeline.text.cache import content_hash; "
                            f"print(content_hash('m', {tuple(PROMPTS)!r}))"], capture_output=True, text=True,
                           check=True, env={**os.environ, "PYTHONHASHSEED": "random"}).stdout.strip()
    assert other == key
    assert key != content_hash("m2", PROMPTS)
    assert key != content_hash("m", PROMPTS[::-1])
    assert key != content_hash("m", [PROMPTS[0] + " ", *PROMPTS[1:]])


@pytest.mark.parametrize("location", ["local", "memory"])
def test_put_then_get_round_trips_exactly(tmp_path, location):
    root = str(tmp_path / "cache") if location == "local" else f"memory://defr-cache-{uuid.uuid4().hex}"
    cache = EmbeddingCache(root)
    key, emb = content_hash("m", PROMPTS), unit_rows(3, 16)
    assert cache.get(key) is None and key not in cache
    path = cache.put(key, emb, PROMPTS, "m")
    assert key in cache and path.endswith(f"/{key[:2]}/{key}.parquet")
    got = cache.get(key, PROMPTS)
    assert got.dtype == np.float32 and np.array_equal(got, emb)
    # A colleague's cache object on the same location sees the entry.
    assert np.array_equal(EmbeddingCache(root).get(key), emb)
    leftovers = [p for p in cache.fs.find(cache.root) if p.endswith(".tmp")]
    assert leftovers == []


def test_home_relative_location_is_expanded(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    cache = EmbeddingCache("~/emb")
    assert cache.location == str(tmp_path / "emb")


def test_corrupt_or_mismatched_entry_is_a_miss_and_gets_rewritten(tmp_path, caplog):
    cache = EmbeddingCache(str(tmp_path))
    key, emb = content_hash("m", PROMPTS), unit_rows(3, 8)
    cache.put(key, emb, PROMPTS, "m")
    assert cache.get(key, ["other", "prompts", "here"]) is None
    with open(cache.path(key), "wb") as f:
        f.write(b"PAR1 truncated")
    assert cache.get(key, PROMPTS) is None
    assert "unreadable" in caplog.text
    cache.put(key, emb, PROMPTS, "m")
    assert np.array_equal(cache.get(key, PROMPTS), emb)


def test_put_rejects_embeddings_that_do_not_match_the_prompts(tmp_path):
    cache = EmbeddingCache(str(tmp_path))
    with pytest.raises(ValueError, match="do not match 3 prompts"):
        cache.put("ab" * 32, unit_rows(2, 8), PROMPTS, "m")
    assert not any(tmp_path.rglob("*.parquet"))


def test_empty_location_is_an_error():
    with pytest.raises(ValueError, match="cache: empty"):
        EmbeddingCache("")


def test_second_run_is_a_hit_without_loading_and_new_prompts_miss(tmp_path, load_calls):
    cache = EmbeddingCache(str(tmp_path / "team-cache"))
    first, key, hit = embed_prompts(text_encoder("open_clip", "defr-tiny-vit"), PROMPTS, cache,
                                    batch_size=2, progress=False)
    assert not hit and len(load_calls) == 1 and first.shape == (3, 64)

    # A fresh encoder object (as in a new process): served from the cache, the loader is never called.
    again, key2, hit2 = embed_prompts(text_encoder("open_clip", "defr-tiny-vit"), PROMPTS, cache,
                                      progress=False)
    assert hit2 and key2 == key and len(load_calls) == 1
    np.testing.assert_array_equal(again, first)

    changed = [p.replace("a person", "someone") for p in PROMPTS]
    _, key3, hit3 = embed_prompts(text_encoder("open_clip", "defr-tiny-vit"), changed, cache, progress=False)
    assert not hit3 and key3 != key and len(load_calls) == 2


def test_without_a_cache_every_call_computes(load_calls):
    enc = text_encoder("open_clip", "defr-tiny-vit")
    _, _, hit = embed_prompts(enc, PROMPTS, None, progress=False)
    assert not hit and len(load_calls) == 1
