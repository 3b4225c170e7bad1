"""Boxes -> patch coverage on a ViT's grid -> the CLS row of an additive attention mask (0 / -inf).

The model sees the image squashed to ``S x S`` (no crop, see ``pipeline.model.inference_transform``),
so a box in original pixels maps to model pixels by ``S / W`` horizontally and ``S / H`` vertically.

Partly covered patches follow ``rule``:

* ``"any"``: a patch is kept when the box overlaps it with positive area (the most permissive: the CLS
  token sees every pixel of the box, plus some context around its border).
* ``"center"``: a patch is kept when its centre lies inside the box (closest to the box's area).
* ``"fraction"``: a patch is kept when at least ``min_fraction`` of its area is inside the box.

A box that keeps no patch under ``"center"`` or ``"fraction"`` (a box smaller than a patch) falls back
to ``"any"``, so every valid box keeps at least one patch.

Masks are additive floats, 0 where attention is allowed and -inf where blocked. Never build them by
casting a boolean to float: that gives +1.0 for "blocked", a bias that does not block anything (the
bug of the authors' release; open_clip's ``ResidualAttentionBlock`` does that cast itself).
"""
from __future__ import annotations

import numpy as np
import torch

from pipeline.choices import PATCH_RULES as RULES


def patch_coverage(boxes: np.ndarray, image_wh: np.ndarray, grid: tuple[int, int], rule: str = "any",
                   min_fraction: float = 0.5) -> np.ndarray:
    """Which patches each box covers.

    Args:
        boxes: [P, 4] boxes ``x1, y1, x2, y2`` in original-image pixels (already clipped to the image).
        image_wh: [P, 2] (width, height) of each box's image, or [2] for all.
        grid: (rows, cols) of the patch grid (``visual.grid_size``).
        rule: "any" | "center" | "fraction" (see the module docstring).
        min_fraction: the covered fraction of a patch that keeps it under ``rule="fraction"``.

    Returns:
        [P, rows * cols] bool, row-major like the ViT's patch tokens.

    Raises:
        ValueError: unknown rule, min_fraction outside (0, 1], or boxes of the wrong shape.
    """
    if rule not in RULES:
        raise ValueError(f"patch rule {rule!r} is not one of {RULES}")
    if rule == "fraction" and not 0.0 < min_fraction <= 1.0:
        raise ValueError(f"min_fraction must be in (0, 1] for the 'fraction' rule, got {min_fraction}")
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    wh = np.broadcast_to(np.asarray(image_wh, dtype=np.float64).reshape(-1, 2), (len(boxes), 2))
    rows, cols = grid
    # Box in patch units: the image spans [0, cols] x [0, rows] whatever its size.
    x1 = boxes[:, 0] / wh[:, 0] * cols
    x2 = boxes[:, 2] / wh[:, 0] * cols
    y1 = boxes[:, 1] / wh[:, 1] * rows
    y2 = boxes[:, 3] / wh[:, 1] * rows
    cx = np.arange(cols, dtype=np.float64)
    cy = np.arange(rows, dtype=np.float64)
    # Overlap of [x1, x2] with each patch column [c, c + 1] (and rows likewise), in patch units.
    ox = np.clip(np.minimum(x2[:, None], cx + 1) - np.maximum(x1[:, None], cx), 0.0, 1.0)
    oy = np.clip(np.minimum(y2[:, None], cy + 1) - np.maximum(y1[:, None], cy), 0.0, 1.0)
    area = oy[:, :, None] * ox[:, None, :]                      # [P, rows, cols] covered fraction
    anyone = area > 0
    if rule == "any":
        keep = anyone
    elif rule == "center":
        inx = (cx + 0.5 >= x1[:, None]) & (cx + 0.5 <= x2[:, None])
        iny = (cy + 0.5 >= y1[:, None]) & (cy + 0.5 <= y2[:, None])
        keep = iny[:, :, None] & inx[:, None, :]
    else:
        keep = area >= min_fraction - 1e-9
    empty = ~keep.reshape(len(boxes), -1).any(axis=1)
    keep[empty] = anyone[empty]
    return keep.reshape(len(boxes), rows * cols)


def pair_coverage(human_boxes: np.ndarray, object_boxes: np.ndarray, image_wh: np.ndarray,
                  grid: tuple[int, int], rule: str = "any", min_fraction: float = 0.5) -> np.ndarray:
    """[P, rows * cols] bool: patches covered by the human box or the object box of each pair."""
    return (patch_coverage(human_boxes, image_wh, grid, rule, min_fraction)
            | patch_coverage(object_boxes, image_wh, grid, rule, min_fraction))


def cls_mask_row(keep: np.ndarray | torch.Tensor, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """The CLS row of the additive attention mask: [P, 1 + N], 0 for the CLS and kept patches, -inf else.

    The CLS token always attends to itself, so no row is all -inf (no NaN from the softmax).
    """
    keep = torch.as_tensor(keep, dtype=torch.bool, device=device)
    row = torch.full((keep.shape[0], keep.shape[1] + 1), float("-inf"), dtype=dtype, device=device)
    row[:, 0] = 0.0
    row[:, 1:].masked_fill_(keep, 0.0)
    return row


def full_mask(row: torch.Tensor) -> torch.Tensor:
    """[P, T, T] additive mask whose first (CLS) row is ``row`` and whose patch rows are all 0."""
    p, t = row.shape
    mask = torch.zeros(p, t, t, dtype=row.dtype, device=row.device)
    mask[:, 0] = row
    return mask
