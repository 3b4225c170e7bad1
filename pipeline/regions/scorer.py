"""One batch of images + their pairs -> HOI_DETECTIONS rows, with a loaded DEFR classifier."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from pipeline.classes import ClassSpace, model_classes

from . import masked_vit
from .masks import cls_mask_row, pair_coverage
from .pairs import Pairs
from .scoring import empty_detections, pair_scores, top_detections

PATHS = ("shared_prefix", "naive")


@dataclass(frozen=True)
class ScoreParams:
    """Masked scoring knobs (params.yaml ``score_regions``)."""

    masked_layers: int = 1         # L: the last L blocks get the CLS mask (paper: 1)
    patch_rule: str = "any"        # "any" | "center" | "fraction" (pipeline.regions.masks)
    min_fraction: float = 0.5      # for patch_rule "fraction"
    score_power: float = 1.0       # p in sigmoid(logit) * s_h^p * s_o^p (paper 1, authors' release 2.8)
    top_k: int = 100               # detections kept per image (0: all non-zero)
    path: str = "shared_prefix"    # or "naive" (the reference: one full forward per pair)
    max_pairs: int = 2048          # pairs per forward chunk (bounds memory)


class RegionScorer:
    """Scores the pairs of a batch of images with a :class:`pipeline.model.DEFRClassifier`.

    Args:
        model: the classifier (eval mode; a ViT backbone with CLS pooling).
        params: see :class:`ScoreParams`.
        classes: the label space (which classes involve which COCO object); default the model's own
            (:func:`pipeline.classes.model_classes`).

    Raises:
        ValueError: unknown path, a backbone masked scoring does not support, or classes that involve no
            COCO object at all (HOI detection does not apply to such a model).
    """

    def __init__(self, model: torch.nn.Module, params: ScoreParams = ScoreParams(),
                 classes: ClassSpace | None = None):
        if params.path not in PATHS:
            raise ValueError(f"score_regions.path {params.path!r}: expected one of {PATHS}")
        masked_vit.check_visual(model.visual, params.masked_layers)
        self.model, self.params = model.eval(), params
        self.classes = classes or model_classes(model.config)
        if not self.classes.has_objects:
            raise ValueError(f"the model's {len(self.classes)} classes involve no COCO object (e.g. "
                             f"{self.classes.names[:3]}): no box pair can score them, HOI detection does not apply")
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype

    def mask_rows(self, pairs: list[Pairs], sizes: list[tuple[float, float]]) -> torch.Tensor:
        """[sum P, 1 + N] additive CLS rows of all pairs of the batch, image after image."""
        grid = tuple(self.model.visual.grid_size)
        keep = [pair_coverage(p.human_box, p.object_box, np.asarray(wh, np.float64), grid,
                              self.params.patch_rule, self.params.min_fraction) for p, wh in zip(pairs, sizes)]
        keep = np.concatenate(keep) if keep else np.zeros((0, grid[0] * grid[1]), bool)
        return cls_mask_row(keep, self.dtype, self.device)

    @torch.inference_mode()
    def logits(self, images: torch.Tensor, pairs: list[Pairs], sizes: list[tuple[float, float]]) -> torch.Tensor:
        """[sum P, C] pair logits for ``images`` [B, 3, S, S] and the pairs of each image."""
        counts = torch.tensor([len(p) for p in pairs])
        pair_image = torch.repeat_interleave(torch.arange(len(pairs)), counts).to(self.device)
        rows = self.mask_rows(pairs, sizes)
        images = images.to(self.device, self.dtype)
        visual, head, L, chunk = self.model.visual, self.model.classify, self.params.masked_layers, self.params.max_pairs
        if self.params.path == "naive":
            out = [masked_vit.naive_logits(visual, head, images, pair_image[s:s + 1], rows[s:s + 1], L)
                   for s in range(len(pair_image))]
        else:
            tokens = masked_vit.prefix_tokens(visual, images, L)
            out = [head(visual._pool(masked_vit.masked_tail(
                visual, tokens, pair_image[s:s + chunk], rows[s:s + chunk], L))[0])
                for s in range(0, len(pair_image), chunk)]
        if not out:
            return torch.zeros(0, self.model.config.num_classes)
        return torch.cat(out).float().cpu()

    def score(self, image_ids: list[int], images: torch.Tensor, pairs: list[Pairs],
              sizes: list[tuple[float, float]]) -> pa.Table:
        """HOI_DETECTIONS rows (top-k per image) for a batch; images without pairs give no rows."""
        has = [i for i, p in enumerate(pairs) if len(p)]
        if not has:
            return empty_detections()
        logits = self.logits(images[has], [pairs[i] for i in has], [sizes[i] for i in has])
        tables, start = [], 0
        for i in has:
            p = pairs[i]
            s = pair_scores(logits[start:start + len(p)], p.human_score, p.object_score, p.object_label,
                            self.classes, self.params.score_power)
            tables.append(top_detections(image_ids[i], s, p.human_box, p.object_box, self.params.top_k))
            start += len(p)
        return pa.concat_tables(tables)
