"""Registers the project's own open_clip model configs (tiny random-init models for the demo and tests).

DEMO/TEST ONLY: ``defr-tiny-vit`` (ViT, width 64, 3 layers, patch 16) and ``defr-tiny-rn`` (ModifiedResNet)
have no pretrained weights; they build offline in a fraction of a second. Real runs name any open_clip
model (``ViT-B-32``, ``ViT-B-16``, ``ViT-L-14``, ``RN50``, ...) with a pretrained tag or checkpoint path.
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

TINY_MODELS = ("defr-tiny-vit", "defr-tiny-rn")


@lru_cache(maxsize=1)
def register_project_configs() -> tuple[str, ...]:
    import open_clip

    folder = resources.files("pipeline.assets").joinpath("open_clip")
    for name in TINY_MODELS:
        open_clip.add_model_config(str(folder.joinpath(f"{name}.json")))
    return TINY_MODELS


@lru_cache(maxsize=1)
def known_model_names() -> tuple[str, ...]:
    """open_clip's model config names plus the project's tiny ones, read from the JSON files without
    importing open_clip (and torch): params are checked in milliseconds. Empty when open_clip is absent."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return ()
    folder = Path(list(spec.submodule_search_locations)[0]) / "model_configs"
    return tuple(sorted({p.stem for p in folder.glob("*.json")} | set(TINY_MODELS)))
