"""The DEFR classifier: an open_clip image encoder plus one linear layer initialized from language embeddings.

Logits follow the paper's eq. (1), ``s_i = gamma * x^T w_i + b_i``, with ``x`` the L2-normalized image
feature and ``w_i`` initialized to the normalized text embedding of class ``i`` (zero bias), so at
initialization a CLIP backbone with CLIP text embeddings gives exactly CLIP's zero-shot logits.

Where the classifier sits (``ModelConfig.classifier_position``):

* ``pre_proj`` (the CLIP way, ViT only): the head acts on the pooled token *before* ``visual.proj`` with
  ``W0 = normalize(T) @ proj^T``; the feature is normalized by the norm of its projection, so the logits
  at step 0 equal ``gamma * cos(x @ proj, T)``. Needs text dim == the projection's output dim.
* ``post_proj``: the head acts on the projected feature. When the text dimension differs from it (e.g. a
  384-d MiniLM with a 512-d ViT-B/32) a learnable, bias-free ``feature_proj`` (random orthogonal init)
  maps the feature to the text dimension first.
* ``auto`` (resolved at build time and stored resolved): ``pre_proj`` when it applies, else ``post_proj``.

Everything is built by :func:`build_model` and saved as ``model.safetensors`` + ``config.json`` (no pickle).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline import storage
from pipeline.assets.clip_configs import TINY_MODELS, register_project_configs

log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
from pipeline.choices import CLASSIFIER_POSITIONS as POSITIONS, INITS
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a :class:`DEFRClassifier` (JSON-serialisable).

    Attributes:
        model_name: open_clip architecture (``ViT-B-32``, ``ViT-B-16``, ``RN50``, ``defr-tiny-vit``, ...).
        pretrained: open_clip tag (``openai``), local path or fsspec URI of a CLIP checkpoint, or "" for
            random init. Used only when building a new model, never when loading our own checkpoint.
        image_size: model input resolution; differing from the checkpoint's (672 vs 224) interpolates the
            positional embeddings.
        num_classes: classifier rows (600 HICO HOIs).
        gamma: logit scale of eq. (1).
        classifier_position: ``auto`` | ``pre_proj`` | ``post_proj`` (see the module docstring).
        init: ``text`` (language-embedding rows) or ``random`` (random unit rows, the paper's ablation).
        text_dim: dimension of the text embeddings (0: take it from the embeddings given to build_model).
        text_model: id of the language model that made the embeddings (from their Parquet metadata).
        normalize_features: L2-normalize the image feature (eq. (1) with unit-norm proxies).
        mean, std: input normalisation of the backbone.
        metadata: free-form notes saved with the checkpoint (e.g. ``demo_only``).
        classes: the label space, one entry per classifier row (``pipeline.classes.ClassSpace.to_list``:
            name, verb, object, coco80), so a checkpoint names its outputs on its own; [] in checkpoints
            written before (600 rows = HICO, see ``pipeline.classes.model_classes``).
    """

    model_name: str = "defr-tiny-vit"
    pretrained: str = ""
    image_size: int = 224
    num_classes: int = 600
    gamma: float = 100.0
    classifier_position: str = "auto"
    init: str = "text"
    text_dim: int = 0
    text_model: str = ""
    normalize_features: bool = True
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    metadata: dict[str, Any] = field(default_factory=dict)
    classes: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{source}: unknown model config key(s) {unknown}; expected some of {sorted(known)}")
        d = dict(d)
        for k in ("mean", "std"):
            if k in d:
                d[k] = tuple(float(v) for v in d[k])
        rows, names = d.get("num_classes", 600), d.get("classes") or []
        if names and len(names) != rows:  # every loader reads this: no output row goes unnamed or misnamed
            raise ValueError(f"{source}: lists {len(names)} classes but the model has {rows} output rows "
                             "(num_classes): the checkpoint's class list does not fit its classifier")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d


class DEFRClassifier(nn.Module):
    """open_clip visual tower + linear head (see the module docstring for the maths)."""

    def __init__(self, config: ModelConfig, visual: nn.Module, head_in: int, feature_proj: nn.Module | None):
        super().__init__()
        self.config = config
        self.visual = visual
        self.is_vit = hasattr(visual, "_embeds") and hasattr(visual, "_pool")
        self.feature_proj = feature_proj
        self.head = nn.Linear(head_in, config.num_classes)

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """Logits [B, C] from the pooled feature (a ViT's ``visual._pool(x)[0]``, before ``visual.proj``;
        a ResNet's attention-pool output)."""
        cfg = self.config
        if cfg.classifier_position == "pre_proj":
            scale = (pooled @ self.visual.proj).norm(dim=-1, keepdim=True) if cfg.normalize_features else 1.0
            logits = F.linear(pooled, self.head.weight) / scale
        else:
            x = pooled @ self.visual.proj if self.is_vit and self.visual.proj is not None else pooled
            if self.feature_proj is not None:
                x = self.feature_proj(x)
            if cfg.normalize_features:
                x = F.normalize(x, dim=-1)
            logits = F.linear(x, self.head.weight)
        return cfg.gamma * logits + self.head.bias

    def pooled(self, images: torch.Tensor) -> torch.Tensor:
        """The feature :meth:`classify` takes."""
        if self.is_vit:
            v = self.visual
            return v._pool(v.transformer(v._embeds(images)))[0]
        return self.visual(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classify(self.pooled(images))


def _check_name(name: str) -> None:
    import open_clip

    register_project_configs()
    if name not in open_clip.list_models():
        close = [m for m in open_clip.list_models() if name.split("-")[0].lower() in m.lower()][:8]
        raise ValueError(f"model.model_name {name!r} is not an open_clip model; similar: {close or 'none'} "
                         f"(tiny demo models: {list(TINY_MODELS)})")


def check_pretrained(model_name: str, pretrained: str) -> None:
    """Fails fast on weights that cannot load: a missing file / URI, or a tag open_clip does not have for
    ``model_name`` (with the tags it has). Downloads nothing.

    Raises:
        FileNotFoundError: a local path or URI that does not exist.
        ValueError: an unknown pretrained tag.
    """
    if not pretrained or pretrained.startswith("hf-hub:"):
        return
    looks_like_path = "/" in pretrained or "://" in pretrained or Path(pretrained).suffix in (".pt", ".pth", ".bin",
                                                                                          ".safetensors")
    if looks_like_path:
        if not storage.exists(pretrained):
            raise FileNotFoundError(f"model.pretrained {pretrained!r}: no such checkpoint file")
        return
    import open_clip

    register_project_configs()
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if pretrained not in tags:
        import difflib

        close = difflib.get_close_matches(pretrained, tags, n=1)
        raise ValueError(f"model.pretrained {pretrained!r} is not a pretrained tag of {model_name}" +
                         (f"; did you mean {close[0]!r}?" if close else "") +
                         f" (tags: {', '.join(tags) or 'none: give a checkpoint file'})")


def _local_pretrained(pretrained: str) -> str:
    """open_clip loads tags and local files itself; other URIs are copied once into the local model cache
    (content-addressed, through pipeline.storage: one download per checkpoint, not one per worker start)."""
    if not pretrained or storage.is_local(pretrained) or pretrained.startswith(("hf-hub:",)):
        return pretrained.removeprefix("file://")
    from pipeline.storage.model_files import local_copy

    return local_copy(pretrained, param="model.pretrained")


def _resize_grid(pos: torch.Tensor, n_new: int) -> torch.Tensor:
    """Bicubic resize of a [1 + g*g, D] positional embedding (first row = class token) to n_new rows."""
    if pos.shape[0] == n_new:
        return pos
    g_old, g_new = int(round((pos.shape[0] - 1) ** 0.5)), int(round((n_new - 1) ** 0.5))
    grid = pos[1:].reshape(1, g_old, g_old, -1).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(g_new, g_new), mode="bicubic", align_corners=False, antialias=True)
    grid = grid.permute(0, 2, 3, 1).reshape(g_new * g_new, -1).to(pos.dtype)
    return torch.cat([pos[:1], grid])


def _build_visual(config: ModelConfig) -> tuple[nn.Module, dict]:
    """The visual tower at ``config.image_size`` (pretrained weights loaded if named) and its preprocess cfg."""
    import open_clip

    _check_name(config.model_name)
    size = int(config.image_size)
    full = open_clip.create_model(config.model_name, pretrained=None, force_image_size=size)
    target, pre = full.visual, open_clip.get_model_preprocess_cfg(full)
    if not config.pretrained:
        return target, pre
    path = _local_pretrained(config.pretrained)
    try:
        # Load at the checkpoint's native size, then interpolate the positional grids to ours (ViT and RN).
        source = open_clip.create_model(config.model_name, pretrained=path).visual
    except Exception as e:  # open_clip raises RuntimeError/KeyError/FileNotFoundError: name the input
        raise ValueError(f"model.pretrained {config.pretrained!r}: cannot load it into {config.model_name}: {e}") from e
    state = source.state_dict()
    for key in ("positional_embedding", "attnpool.positional_embedding"):
        if key in state:
            state[key] = _resize_grid(state[key], target.state_dict()[key].shape[0])
    target.load_state_dict(state)
    return target, pre


def _orthogonal(rows: int, cols: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.empty(rows, cols)
    nn.init.orthogonal_(w, generator=g)
    return w


def build_model(config: ModelConfig, text_embeddings: np.ndarray | None = None, seed: int = 0) -> DEFRClassifier:
    """Builds the classifier (the one factory).

    Args:
        config: the architecture; ``auto`` fields are resolved and the returned model holds the resolved copy.
        text_embeddings: [num_classes, D] language embeddings (normalized here); required for ``init: text``.
        seed: seed of the random parts (random-init rows, ``feature_proj``).

    Raises:
        ValueError: unknown model name, bad position/init, embeddings of the wrong shape or not finite.
    """
    config = dataclasses.replace(config, metadata=dict(config.metadata))
    if config.classifier_position not in POSITIONS:
        raise ValueError(f"model.classifier_position {config.classifier_position!r}: expected one of {POSITIONS}")
    if config.init not in INITS:
        raise ValueError(f"model.init {config.init!r}: expected 'text' or 'random'")
    if text_embeddings is not None:
        t = np.asarray(text_embeddings, dtype=np.float32)
        if t.ndim != 2 or t.shape[0] != config.num_classes:
            raise ValueError(f"text embeddings have shape {t.shape}; expected [{config.num_classes}, dim] "
                             f"(one row per class of model.num_classes)")
        if config.text_dim and t.shape[1] != config.text_dim:
            raise ValueError(f"text embeddings have dim {t.shape[1]}; the model config expects {config.text_dim}")
        if not np.isfinite(t).all() or (np.linalg.norm(t, axis=1) == 0).any():
            raise ValueError("text embeddings contain NaN/inf or all-zero rows")
        config.text_dim = int(t.shape[1])
    elif config.init == "text":
        raise ValueError("model.init is 'text' but no text embeddings were given")

    visual, pre = _build_visual(config)
    config.mean = tuple(float(v) for v in pre.get("mean", OPENAI_MEAN))
    config.std = tuple(float(v) for v in pre.get("std", OPENAI_STD))
    vit = hasattr(visual, "_embeds")
    proj = getattr(visual, "proj", None) if vit else None
    feat_dim = int(proj.shape[1]) if proj is not None else int(getattr(visual, "output_dim", 0) or visual.width)
    config.text_dim = config.text_dim or feat_dim
    can_pre = proj is not None and config.text_dim == proj.shape[1]
    if config.classifier_position == "auto":
        config.classifier_position = "pre_proj" if can_pre else "post_proj"
    if config.classifier_position == "pre_proj" and not can_pre:
        raise ValueError(f"classifier_position 'pre_proj' needs a ViT with a visual projection to "
                         f"{config.text_dim}-d (the text dim); {config.model_name} projects to {feat_dim}-d")

    if text_embeddings is not None and config.init == "text":
        rows = F.normalize(torch.from_numpy(np.asarray(text_embeddings, np.float32)), dim=-1)
    else:
        g = torch.Generator().manual_seed(seed)
        rows = F.normalize(torch.randn(config.num_classes, config.text_dim, generator=g), dim=-1)
    feature_proj = None
    if config.classifier_position == "pre_proj":
        head_in, w0 = proj.shape[0], rows @ proj.detach().T
    else:
        head_in, w0 = config.text_dim, rows
        if config.text_dim != feat_dim:
            feature_proj = nn.Linear(feat_dim, config.text_dim, bias=False)
            with torch.no_grad():
                feature_proj.weight.copy_(_orthogonal(config.text_dim, feat_dim, seed + 1))
    model = DEFRClassifier(config, visual, head_in, feature_proj)
    with torch.no_grad():
        model.head.weight.copy_(w0)
        model.head.bias.zero_()
    return model


def save_checkpoint(model: DEFRClassifier, out_dir: str | os.PathLike) -> Path:
    """Writes ``model.safetensors`` and ``config.json`` into ``out_dir`` (created); returns ``out_dir``.

    Callers that need atomicity wrap ``out_dir`` in :func:`pipeline.storage.atomic_path`.
    """
    from safetensors.torch import save_file

    model = getattr(model, "module", model)  # unwrap DDP
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    # One metadata key: safetensors writes its metadata map in Rust HashMap order, random per call, so two
    # keys make the same weights different bytes (and a new DVC hash for every run). The name is in config.json.
    save_file(state, str(out / WEIGHTS), metadata={"format": "pt"})
    (out / CONFIG).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
    return out


def _read_bytes(uri: str) -> bytes:
    if storage.is_local(uri):
        p = Path(uri.removeprefix("file://"))
        if not p.exists():
            raise FileNotFoundError(f"checkpoint file {p} does not exist")
        return p.read_bytes()
    if not storage.exists(uri):
        raise FileNotFoundError(f"checkpoint file {uri} does not exist")
    with storage.open_file(uri) as f:
        return f.read()


def read_model_config(model_dir: str) -> ModelConfig:
    """The :class:`ModelConfig` of a trained model folder without reading its weights (fails fast, before
    Ray starts, naming the file)."""
    config_uri = storage.join(model_dir, "config.json")
    if not storage.exists(config_uri):
        raise FileNotFoundError(f"{config_uri} does not exist: run the train stage first (--model {model_dir})")
    with storage.open_file(config_uri) as f:
        return ModelConfig.from_dict(json.load(f), source=config_uri)


def load_checkpoint(dir_or_uri: str | os.PathLike, device: str | torch.device = "cpu") -> DEFRClassifier:
    """Rebuilds a model saved by :func:`save_checkpoint` (local dir or fsspec URI), in eval mode.

    Raises:
        FileNotFoundError: ``config.json`` or ``model.safetensors`` is missing.
        ValueError: unreadable files, or weights that do not fit the config (names the keys).
    """
    from safetensors.torch import load as load_safetensors

    root = str(dir_or_uri)
    cfg_uri, w_uri = storage.join(root, CONFIG), storage.join(root, WEIGHTS)
    try:
        cfg = ModelConfig.from_dict(json.loads(_read_bytes(cfg_uri)), source=cfg_uri)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as e:
        raise ValueError(f"{cfg_uri}: not a valid model config JSON: {e}") from e
    try:
        state = load_safetensors(_read_bytes(w_uri))
    except FileNotFoundError:
        raise
    except Exception as e:  # safetensors raises its own error types on corrupt files
        raise ValueError(f"{w_uri}: not a readable safetensors file: {e}") from e
    model = build_model(dataclasses.replace(cfg, pretrained="", init="random"), None)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        raise ValueError(f"{w_uri} does not fit the config in {cfg_uri} ({cfg.model_name}, image_size "
                         f"{cfg.image_size}): missing {missing[:5]}, unexpected {unexpected[:5]}, "
                         f"shape mismatches {shapes[:5]}")
    model.load_state_dict(state)
    model.config = cfg  # keep the saved config verbatim (init/pretrained as trained)
    return model.to(device).eval()


class _ToRGB:
    def __call__(self, img):
        return img.convert("RGB")


def inference_transform(config: ModelConfig):
    """PIL image -> normalized [3, S, S] tensor: a plain squash-resize (no crop, so box coordinates scale
    by S/W and S/H and every pixel is seen), then the backbone's mean/std."""
    from torchvision import transforms as T

    s = int(config.image_size)
    return T.Compose([_ToRGB(), T.Resize((s, s), interpolation=T.InterpolationMode.BICUBIC, antialias=True),
                      T.ToTensor(), T.Normalize(config.mean, config.std)])
