"""CLS attention of the last ViT block with and without a pair's mask, drawn over the image (paper Fig. 4).

For one image and one human-object pair: left, the image with the two boxes; middle, where the CLS token
of the last block attends without a mask (mean over heads); right, the same with the pair's mask, which
must be zero outside the boxes' patches. Written as PNG for DVC plots (score_regions) and by ``defr detect
--attention``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
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


def draw(image, human_box, object_box, unmasked: np.ndarray, masked: np.ndarray, path: str | os.PathLike | IO[bytes],
         title: str = "") -> None:
    """Writes a 3-panel PNG (to a path or a binary file object): image + boxes, unmasked CLS attention,
    masked CLS attention."""
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
    fig.savefig(path, dpi=80, format="png")
    plt.close(fig)


def save_attention_map(model, transform, image, human_box, object_box, path, title: str = "",
                       patch_rule: str = "any", min_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Computes and draws the maps of one pair (boxes in original pixels; ``path`` a path or a binary file
    object); returns them too."""
    keep = pair_coverage(np.asarray([human_box], float), np.asarray([object_box], float),
                         np.asarray(image.size, float), tuple(model.visual.grid_size), patch_rule, min_fraction)[0]
    x = transform(image).to(next(model.parameters()).device)
    unmasked, masked = last_block_attention(model, x, keep)
    draw(image, human_box, object_box, unmasked, masked, path, title)
    return unmasked, masked


def top_pair_maps(model, detections: pa.Table, images: pa.Table, out_dir: str | os.PathLike, n: int,
                  patch_rule: str = "any", min_fraction: float = 0.5) -> int:
    """Fig. 4 plots of the top-scoring pair of the first ``n`` images (by id) that have detections.

    Args:
        model: the classifier whose attention is drawn (eval mode).
        detections: HOI_DETECTIONS rows (image_id, hoi, human_box, object_box, score).
        images: image_id, uri, width, height of those images.
        out_dir: existing folder; writes ``image_<id>.png``.
        n: number of images.
        patch_rule, min_fraction: as in the scoring (:mod:`pipeline.regions.masks`).

    Returns:
        How many plots were written.

    Raises:
        pipeline.data.images.ImageError: an image cannot be read (or is not its annotated size).
    """
    from pipeline.classes import model_classes
    from pipeline.data.images import read_rgb
    from pipeline.model import inference_transform

    if n <= 0 or detections.num_rows == 0:
        return 0
    transform, classes = inference_transform(model.config), model_classes(model.config)
    info = {r["image_id"]: r for r in images.select(["image_id", "uri", "width", "height"]).to_pylist()}
    ids = sorted(set(detections["image_id"].to_pylist()))[:n]
    for image_id in ids:
        rows = detections.filter(pc.equal(detections["image_id"], image_id))
        top = rows.slice(int(pc.index(rows["score"], pc.max(rows["score"])).as_py()), 1).to_pylist()[0]
        r = info[image_id]
        title = f"image {image_id}: {classes[top['hoi']].name} (score {top['score']:.3f})"
        save_attention_map(model, transform, read_rgb(r["uri"], (r["width"], r["height"])), top["human_box"],
                           top["object_box"], Path(out_dir) / f"image_{image_id}.png", title, patch_rule,
                           min_fraction)
    return len(ids)
