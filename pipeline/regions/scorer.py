"""One batch of images + their pairs -> HOI_DETECTIONS rows, with a loaded DEFR classifier."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from pipeline.classes.space import ClassSpace, model_classes
from pipeline.precision import autocast, full_precision

from pipeline.regions import masked_vit
from pipeline.regions.masks import cls_mask_row, pair_coverage
from pipeline.regions.pairs import Pairs
from pipeline.regions.ranking import empty_detections, pair_scores, top_detections

from pipeline.choices import SCORE_PATHS as PATHS


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
        precision: autocast of the forward pass (:mod:`pipeline.precision`; ``placement.<stage>.precision``):
            ``auto`` = bf16 on CUDA, fp32 on CPU.

    Raises:
        ValueError: unknown path, a backbone masked scoring does not support, or classes that involve no
            COCO object at all (HOI detection does not apply to such a model).
    """

    def __init__(self, model: torch.nn.Module, params: ScoreParams = ScoreParams(),
                 classes: ClassSpace | None = None, precision: str = "auto"):
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
        self.precision = precision
        autocast(self.device, precision)  # an unknown precision fails here, not at the first batch

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
        return self.forward(images, pairs, sizes)[0]

    @torch.inference_mode()
    def forward(self, images: torch.Tensor, pairs: list[Pairs], sizes: list[tuple[float, float]],
                attend: list[bool] | None = None) -> tuple[torch.Tensor, dict[int, tuple[torch.Tensor, torch.Tensor]]]:
        """Pair logits and, for the images ``attend`` marks, the last block's CLS attention of the same pass.

        Args:
            images: [B, 3, S, S] model inputs.
            pairs, sizes: the pairs and the original (width, height) of each image.
            attend: [B] whether to return image ``i``'s attention; None: none.

        Returns:
            ([sum P, C] logits, {i: (unmasked [N], masked [P_i, N])}): CLS -> patch attention of the last
            block, mean over heads, without a mask and with each pair's mask (the top pair's is chosen
            by :meth:`score_with_attention`).
        """
        with autocast(self.device, self.precision):
            return self._forward(images, pairs, sizes, attend)

    def _forward(self, images, pairs, sizes, attend):
        counts = torch.tensor([len(p) for p in pairs])
        # On the CPU: the masked blocks read which pairs belong to which image without a device sync.
        pair_image = torch.repeat_interleave(torch.arange(len(pairs)), counts)
        rows = self.mask_rows(pairs, sizes)
        images = images.to(self.device, self.dtype)
        visual, L, chunk = self.model.visual, self.params.masked_layers, self.params.max_pairs
        head = full_precision(self.model.classify, self.dtype)
        wanted = [i for i, a in enumerate(attend or []) if a and len(pairs[i])]
        # The pairs of the wanted images: their weights are kept (on the CPU, [P_i, N] each).
        kept = torch.isin(pair_image, torch.tensor(wanted, dtype=pair_image.dtype))
        weights = []
        if self.params.path == "naive":
            out = [masked_vit.naive_logits(visual, head, images, pair_image[s:s + 1], rows[s:s + 1], L)
                   for s in range(len(pair_image))]
            if wanted:
                # open_clip's blocks return no weights: the reference path's figures come from the
                # shared-prefix computation of the same pairs (the same attention up to float rounding).
                tokens = masked_vit.prefix_tokens(visual, images, L)
                _, w = masked_vit.masked_tail(visual, tokens, pair_image[kept], rows[kept.to(self.device)], L,
                                              return_weights=True)
                weights.append(_patch_attention(w))
        else:
            tokens = masked_vit.prefix_tokens(visual, images, L)
            out = []
            for s in range(0, len(pair_image), chunk):
                cls, w = masked_vit.masked_tail(visual, tokens, pair_image[s:s + chunk], rows[s:s + chunk], L,
                                                return_weights=True)
                out.append(head(visual._pool(cls)[0]))
                if wanted:
                    weights.append(_patch_attention(w[kept[s:s + chunk].to(self.device)]))
        if not out:
            return torch.zeros(0, self.model.config.num_classes), {}
        maps = {}
        if wanted:
            # The image without a mask: a row that blocks nothing, through the same masked blocks.
            n = rows.shape[1] - 1
            idx = torch.tensor(wanted)
            free = cls_mask_row(np.ones((len(wanted), n), bool), self.dtype, self.device)
            unmasked = _patch_attention(masked_vit.masked_tail(visual, tokens, idx, free, L, return_weights=True)[1])
            masked = torch.cat(weights)
            start = 0
            for k, i in enumerate(wanted):
                maps[i] = (unmasked[k], masked[start:start + len(pairs[i])])
                start += len(pairs[i])
        return torch.cat(out).float().cpu(), maps

    def score(self, image_ids: list[int], images: torch.Tensor, pairs: list[Pairs],
              sizes: list[tuple[float, float]]) -> pa.Table:
        """HOI_DETECTIONS rows (top-k per image) for a batch; images without pairs give no rows."""
        return self.score_with_attention(image_ids, images, pairs, sizes)[0]

    def score_with_attention(self, image_ids: list[int], images: torch.Tensor, pairs: list[Pairs],
                             sizes: list[tuple[float, float]], attend=()) -> tuple[pa.Table, dict]:
        """:meth:`score`, plus the attention maps of each ``attend`` image's top pair, from the same pass.

        Args:
            attend: image ids whose maps to return (a collection; those without rows give none).

        Returns:
            (HOI_DETECTIONS rows, {image_id: (unmasked, masked)}): [rows, cols] grids of the last block's
            CLS -> patch attention, mean over heads, without a mask and with the mask of the pair of the
            image's first (best) row; each sums to at most 1 (the rest goes to the CLS itself).
        """
        has = [i for i, p in enumerate(pairs) if len(p)]
        if not has:
            return empty_detections(), {}
        attend = set(attend)
        logits, maps = self.forward(images[has], [pairs[i] for i in has], [sizes[i] for i in has],
                                    [image_ids[i] in attend for i in has])
        grid = tuple(self.model.visual.grid_size)
        tables, tops, start = [], {}, 0
        for k, i in enumerate(has):
            p = pairs[i]
            s = pair_scores(logits[start:start + len(p)], p.human_score, p.object_score, p.object_label,
                            self.classes, self.params.score_power)
            tables.append(top_detections(image_ids[i], s, p.human_box, p.object_box, self.params.top_k))
            start += len(p)
            if k in maps and tables[-1].num_rows:
                # top_detections ranks by descending score, first index on ties: np.argmax's pick.
                top = int(np.argmax(s.reshape(-1))) // s.shape[1]
                unmasked, masked = maps[k]
                tops[image_ids[i]] = (unmasked.reshape(grid).numpy(), masked[top].reshape(grid).numpy())
        return pa.concat_tables(tables), tops


def _patch_attention(weights: torch.Tensor) -> torch.Tensor:
    """[P, H, 1 + N] CLS attention weights -> [P, N] over the patches, mean over heads, float32 on the CPU."""
    return weights.mean(dim=1)[:, 1:].float().cpu()
