"""CLS attention of the last ViT block with and without a pair's mask, drawn over the image (paper Fig. 4).

For one image and one human-object pair: left, the image with the two boxes; middle, where the CLS token
of the last block attends without a mask (mean over heads); right, the same with the pair's mask, which
must be zero outside the boxes' patches. Written as PNG for DVC plots.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from pipeline.regions import masked_vit
from pipeline.regions.masks import cls_mask_row, pair_coverage


@torch.inference_mode()
def last_block_attention(model: torch.nn.Module, image: torch.Tensor, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CLS -> patch attention of the last block, mean over heads, as [rows, cols] grids.

    Args:
        model: a DEFR classifier (or anything with ``.visual``, an open_clip ViT).
        image: [3, S, S] model input.
        keep: [N] bool patches the pair's boxes cover.

    Returns:
        (unmasked, masked) attention maps; each sums to at most 1 (the rest goes to the CLS itself).
    """
    visual = model.visual
    masked_vit.check_visual(visual, 1)
    dtype = next(visual.parameters()).dtype
    tokens = masked_vit.prefix_tokens(visual, image[None].to(dtype), 1)
    rows = torch.cat([cls_mask_row(np.ones((1, len(keep)), bool), dtype), cls_mask_row(keep[None], dtype)])
    cls = tokens[[0, 0], :1]
    _, w = masked_vit.cls_attention(visual.transformer.resblocks[-1], cls, tokens[:, 1:],
                                    torch.zeros(2, dtype=torch.long), rows, return_weights=True)
    maps = w.mean(dim=1)[:, 1:].float().reshape(2, *visual.grid_size).numpy()
    return maps[0], maps[1]


def draw(image, human_box, object_box, unmasked: np.ndarray, masked: np.ndarray, path: str | os.PathLike,
         title: str = "") -> None:
    """Writes a 3-panel PNG: image + boxes, unmasked CLS attention, masked CLS attention."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    w, h = image.size
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
    for ax, heat, name in zip(axes, (None, unmasked, masked), ("boxes", "CLS attention, no mask",
                                                                 "CLS attention, pair mask")):
        ax.imshow(image)
        if heat is not None:
            ax.imshow(heat, extent=(0, w, h, 0), cmap="jet", alpha=0.5, interpolation="nearest")
        for box, color in ((human_box, "lime"), (object_box, "red")):
            x1, y1, x2, y2 = (float(v) for v in box)
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color=color, lw=1.5))
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def save_attention_map(model, transform, image, human_box, object_box, path, title: str = "",
                       patch_rule: str = "any", min_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Computes and draws the maps of one pair (boxes in original pixels); returns them too."""
    keep = pair_coverage(np.asarray([human_box], float), np.asarray([object_box], float),
                         np.asarray(image.size, float), tuple(model.visual.grid_size), patch_rule, min_fraction)[0]
    x = transform(image).to(next(model.parameters()).device)
    unmasked, masked = last_block_attention(model, x, keep)
    draw(image, human_box, object_box, unmasked, masked, path, title)
    return unmasked, masked
