"""Converting the authors' released DEFR classifier state dicts (their modified OpenAI CLIP ViT) to ours.

Their backbone is OpenAI CLIP's ``VisionTransformer``, whose parameter names open_clip keeps verbatim
(``conv1.weight``, ``transformer.resblocks.N.attn.in_proj_weight``, ``ln_post.*``, ``proj``, ...), plus one
linear layer of 600 rows. This module strips wrapper prefixes (``module.``, ``model.``, ``visual.``, ...),
finds the 600-row linear layer, infers the resolution from the positional grid and whether the head sits
before (``[600, width]``) or after (``[600, embed_dim]``) the projection, and writes our
``model.safetensors`` + ``config.json``. What the logits of their head are scaled by is not recorded in
the state dict: ``gamma`` and ``normalize_features`` are arguments (check the release's config).
Checked here on synthetic state dicts in that layout only; no released file was available offline.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from pipeline.model import DEFRClassifier, ModelConfig, build_model, save_checkpoint

log = logging.getLogger(__name__)

PREFIXES = ("module.", "model.", "clip.", "visual.", "image_encoder.", "encoder.", "backbone.")


def read_state_dict(path: str | os.PathLike, trusted: bool = False) -> dict[str, torch.Tensor]:
    """Tensors of a ``.pt``/``.pth``/``.safetensors`` file; a full pickle load only when ``trusted``."""
    path = str(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trusted)
    except Exception as e:
        raise ValueError(f"{path}: cannot read it as a weights-only checkpoint ({e}); if you trust the file, "
                         "pass trusted=True (runs code stored in the pickle)") from e
    for key in ("state_dict", "model", "model_state_dict", "net"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: holds no state dict of tensors")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p):], True
    return key


def convert_authors_checkpoint(src: str | os.PathLike, out_dir: str | os.PathLike, model_name: str = "ViT-B-16",
                               num_classes: int = 600, gamma: float = 100.0, normalize_features: bool = True,
                               head_key: str | None = None, trusted: bool = False) -> DEFRClassifier:
    """Loads the authors' file into a :class:`DEFRClassifier`, saves it to ``out_dir`` and returns it.

    Raises:
        ValueError: no (or several) 600-row linear layers, or backbone weights that do not fit ``model_name``.
    """
    raw = read_state_dict(src, trusted)
    heads = sorted({k.rsplit(".", 1)[0] for k, v in raw.items()
                    if k.endswith(".weight") and v.ndim == 2 and v.shape[0] == num_classes})
    if head_key is None:
        if len(heads) != 1:
            raise ValueError(f"{src}: expected one {num_classes}-row linear layer, found {heads}; pass head_key")
        head_key = heads[0]
    weight, bias = raw[f"{head_key}.weight"], raw.get(f"{head_key}.bias", torch.zeros(num_classes))
    visual = {_strip(k): v for k, v in raw.items() if not k.startswith(head_key + ".")}
    if "positional_embedding" not in visual or "proj" not in visual:
        raise ValueError(f"{src}: no ViT backbone keys (positional_embedding, proj) after stripping {PREFIXES}")
    grid = int(round((visual["positional_embedding"].shape[0] - 1) ** 0.5))
    patch = visual["conv1.weight"].shape[-1]
    width, embed = visual["proj"].shape
    # The authors classify before the projection (their CLIP way); equal dims are read that way too.
    position = "pre_proj" if weight.shape[1] == width else "post_proj" if weight.shape[1] == embed else None
    if position is None:
        raise ValueError(f"{src}: head {head_key} has {weight.shape[1]} inputs; the backbone has width {width} "
                         f"and projects to {embed}")
    config = ModelConfig(model_name=model_name, image_size=grid * patch, num_classes=num_classes, gamma=gamma,
                         classifier_position=position, init="random", text_dim=embed,
                         normalize_features=normalize_features,
                         metadata={"converted_from": str(src), "head_key": head_key})
    try:
        model = build_model(config, None)
    except ValueError as e:
        raise ValueError(f"{src} does not fit {model_name}: {e}") from e
    theirs = {f"visual.{k}": v for k, v in visual.items()} | {"head.weight": weight, "head.bias": bias}
    try:
        missing, unexpected = model.load_state_dict(theirs, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ValueError(f"{src} does not fit {model_name} at {config.image_size}px: {e}") from e
    if missing or unexpected:
        raise ValueError(f"{src} does not fit {model_name} at {config.image_size}px: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    save_checkpoint(model, Path(out_dir))
    log.info("converted %s (%s head, %dpx) -> %s", src, position, config.image_size, out_dir)
    return model.eval()
