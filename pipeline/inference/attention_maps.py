"""The CLS attention of the last ViT block without and with a pair's mask, drawn over the image (paper Fig. 4).

For one image and one human-object pair: left, the image with the two boxes; middle, where the CLS token
of the last block attends without a mask (mean over heads); right, the same with the pair's mask, which
is zero outside the boxes' patches. The maps come from the forward pass that scored the pairs
(:meth:`pipeline.regions.scorer.RegionScorer.score_with_attention`), and the figure is drawn in the
regional-scoring actor (:class:`pipeline.inference.pair_predictor.PairPredictor`), for the score_regions
stage's DVC plots and for ``defr detect --attention`` alike.
"""
from __future__ import annotations

import os
from typing import IO

import numpy as np


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
