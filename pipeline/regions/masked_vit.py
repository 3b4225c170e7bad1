"""The classifier run with a per-pair CLS attention mask on its last ``L`` transformer blocks.

Two paths compute the same logits:

* :func:`naive_logits`, the reference: one full ViT forward per pair, the additive mask passed to
  open_clip's own blocks (``ResidualAttentionBlock(x, attn_mask=...)``).
* :func:`shared_prefix_logits`: the first ``n - L`` blocks run once per image. In the masked blocks
  only the CLS row of the mask is not zero, so patch tokens see exactly what they see without a mask.
  In the first masked block the CLS input is still the image's, so the patch stream stays shared and
  only the CLS query changes per pair; in the last block only the CLS output is needed. Hence for
  L = 1 and L = 2 a pair costs a few single-query attentions over the image's shared keys/values
  (P pairs = P masked softmaxes + MLP + head); for L >= 3 the middle blocks see a pair-specific CLS
  and run per pair (correct, but P times the cost of those blocks).

The masked blocks never wait on the device: which pairs read which image's keys is read on the host once,
before them (:func:`image_groups`; nothing at all when ``pair_image`` is on the CPU), so a GPU's queue
stays full through the blocks.

Both take ``head``: pooled [P, width] (after ``ln_post``, before ``visual.proj``) -> logits, i.e.
``DEFRClassifier.classify``. Only open_clip ``VisionTransformer`` with token pooling and default
``ResidualAttentionBlock`` s is supported; anything else raises.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.regions.masks import full_mask

Head = Callable[[torch.Tensor], torch.Tensor]
Groups = list[tuple[int, "slice | torch.Tensor"]]


def check_visual(visual: nn.Module, layers: int) -> None:
    """Raises ValueError when ``visual`` is not a ViT that masked scoring supports."""
    from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

    if not isinstance(visual, VisionTransformer):
        raise ValueError(f"regional scoring needs a ViT backbone (attention masks); got "
                         f"{type(visual).__name__}: choose a ViT model_name for score_regions")
    if visual.attn_pool is not None or visual.pool_type != "tok":
        raise ValueError(f"regional scoring needs CLS-token pooling; this ViT pools with "
                         f"pool_type={visual.pool_type!r}, attn_pool={visual.attn_pool is not None}")
    blocks = visual.transformer.resblocks
    if not 1 <= layers <= len(blocks):
        raise ValueError(f"masked_layers must be in [1, {len(blocks)}] for this ViT, got {layers}")
    if not all(isinstance(b, ResidualAttentionBlock) and not hasattr(b, "ln_1_kv") for b in blocks):
        raise ValueError("regional scoring supports open_clip's default ResidualAttentionBlock only")
    if not visual.transformer.batch_first:
        raise ValueError("regional scoring expects a batch_first open_clip transformer")


def prefix_tokens(visual: nn.Module, images: torch.Tensor, layers: int) -> torch.Tensor:
    """Tokens [B, 1 + N, D] entering the first masked block: embeddings + the first n - L blocks."""
    x = visual._embeds(images)
    for block in visual.transformer.resblocks[:len(visual.transformer.resblocks) - layers]:
        x = block(x)
    return x


def naive_logits(visual: nn.Module, head: Head, images: torch.Tensor, pair_image: torch.Tensor,
                 mask_rows: torch.Tensor, layers: int = 1) -> torch.Tensor:
    """Reference: a full forward per pair with the mask given to open_clip's blocks.

    Args:
        visual: open_clip VisionTransformer.
        head: pooled features -> logits.
        images: [B, 3, S, S] model inputs.
        pair_image: [P] index into ``images`` of each pair.
        mask_rows: [P, 1 + N] additive CLS rows (:func:`pipeline.regions.masks.cls_mask_row`).
        layers: number of masked last blocks (L).

    Returns:
        [P, C] logits.
    """
    check_visual(visual, layers)
    blocks = visual.transformer.resblocks
    out = []
    for p in range(len(pair_image)):
        x = visual._embeds(images[pair_image[p]][None])
        mask = full_mask(mask_rows[p:p + 1].to(x.dtype))[0]
        for i, block in enumerate(blocks):
            x = block(x, attn_mask=mask if i >= len(blocks) - layers else None)
        out.append(head(visual._pool(x)[0]))
    return torch.cat(out) if out else torch.zeros(0, 0)


def _heads(t: torch.Tensor, n_head: int) -> torch.Tensor:
    """[X, T, D] -> [X, H, T, D/H]."""
    return t.unflatten(-1, (n_head, -1)).transpose(1, 2)


def _qkv(block: nn.Module, x: torch.Tensor, rows: slice = slice(None)):
    """Query/key/value projections of ``x`` (``rows`` of the packed in_proj: ``slice(d, None)`` = k, v)."""
    attn = block.attn
    bias = attn.in_proj_bias[rows] if attn.in_proj_bias is not None else None
    out = F.linear(block.ln_1(x), attn.in_proj_weight[rows], bias)
    return out.chunk(out.shape[-1] // x.shape[-1], dim=-1)


def image_groups(pair_image: torch.Tensor, device: torch.device | str) -> Groups:
    """The pairs of each image, read on the host once so that the masked blocks never wait on the device.

    Args:
        pair_image: [P] image of each pair (on the CPU: no device sync at all; on a GPU: one).
        device: where the pairs' tensors are.

    Returns:
        [(image row, its pairs)]: a slice when its pairs are consecutive (the scorer's order, no copy),
        else their indices on ``device``.
    """
    host = pair_image.cpu().numpy()
    groups = []
    for src in np.unique(host).tolist():
        idx = np.flatnonzero(host == src)
        whole = idx[-1] - idx[0] + 1 == len(idx)
        groups.append((src, slice(int(idx[0]), int(idx[-1]) + 1) if whole else
                       torch.from_numpy(idx).to(device, non_blocking=True)))
    return groups


def cls_attention(block: nn.Module, cls: torch.Tensor, patches: torch.Tensor,
                  groups: Groups | None, mask_rows: torch.Tensor, return_weights: bool = False):
    """One block's update of the CLS token of each pair, with its own mask row.

    Args:
        block: open_clip ResidualAttentionBlock.
        cls: [P, 1, D] CLS token of each pair entering the block.
        patches: [X, N, D] patch tokens entering the block: one row per image (shared by its pairs)
            or, when ``groups`` is None, one row per pair.
        groups: which pairs read which row of ``patches`` (:func:`image_groups`), or None when X = P
            row-aligned.
        mask_rows: [P, 1 + N] additive CLS rows.
        return_weights: also return the attention weights [P, H, 1 + N].

    Returns:
        [P, 1, D] CLS token after the block (and the weights when asked).
    """
    n_head = block.attn.num_heads
    qc, kc, vc = (_heads(t, n_head) for t in _qkv(block, cls))            # [P, H, 1, d]
    # Patch queries are not needed: project keys and values only.
    kp, vp = (_heads(t, n_head) for t in _qkv(block, patches, slice(cls.shape[-1], None)))  # [X, H, N, d]
    q = qc[:, :, 0] * qc.shape[-1] ** -0.5                                # [P, H, d]
    self_logit = (q * kc[:, :, 0]).sum(-1, keepdim=True)                  # [P, H, 1]
    if groups is None:
        patch_logit = torch.einsum("phd,phnd->phn", q, kp)
    else:
        # Shared patches: one matmul per image against its keys, no per-pair copy of K and V.
        patch_logit = q.new_empty(q.shape[0], q.shape[1], kp.shape[2])
        for src, sel in groups:
            patch_logit[sel] = torch.einsum("phd,hnd->phn", q[sel], kp[src])
    w = (torch.cat([self_logit, patch_logit], dim=-1) + mask_rows[:, None, :].to(q.dtype)).softmax(-1)
    if groups is None:
        mixed = torch.einsum("phn,phnd->phd", w[..., 1:], vp)
    else:
        mixed = torch.empty_like(q)
        for src, sel in groups:
            mixed[sel] = torch.einsum("phn,hnd->phd", w[sel][..., 1:], vp[src])
    mixed = mixed + w[..., :1] * vc[:, :, 0]                               # [P, H, d]
    x = cls + block.ls_1(block.attn.out_proj(mixed.flatten(1))[:, None, :])
    x = x + block.ls_2(block.mlp(block.ln_2(x)))
    return (x, w) if return_weights else x


def masked_tail(visual: nn.Module, tokens: torch.Tensor, pair_image: torch.Tensor,
                mask_rows: torch.Tensor, layers: int = 1, return_weights: bool = False):
    """CLS tokens [P, 1, D] after the last ``layers`` blocks, from the tokens entering them.

    Args:
        visual: open_clip VisionTransformer.
        tokens: [B, 1 + N, D] tokens entering the first masked block (:func:`prefix_tokens`).
        pair_image: [P] image (row of ``tokens``) of each pair; on the CPU, nothing here waits on the device.
        mask_rows: [P, 1 + N] additive CLS rows.
        layers: L.
        return_weights: also return the last block's CLS attention weights [P, H, 1 + N] (the
            attention that made the pooled token: the figures of paper Fig. 4).

    Returns:
        [P, 1, D] CLS tokens, and the weights when asked.
    """
    blocks = list(visual.transformer.resblocks)[len(visual.transformer.resblocks) - layers:]
    groups = image_groups(pair_image, tokens.device)
    index = pair_image.to(tokens.device, non_blocking=True)
    cls = tokens[index, :1]
    patches, src = tokens[:, 1:], groups
    weights = None
    for i, block in enumerate(blocks):
        if i == len(blocks) - 1 and return_weights:
            new_cls, weights = cls_attention(block, cls, patches, src, mask_rows, return_weights=True)
        else:
            new_cls = cls_attention(block, cls, patches, src, mask_rows)
        if i < len(blocks) - 1:
            # Patch rows of the mask are 0: patches attend to everything, the CLS included.
            if i == 0:
                patches = block(tokens)[:, 1:]              # the CLS input is still the image's: shared
            else:
                rows = patches if src is None else patches[index]
                patches, src = block(torch.cat([cls, rows], dim=1))[:, 1:], None
        cls = new_cls
    return (cls, weights) if return_weights else cls


def shared_prefix_logits(visual: nn.Module, head: Head, images: torch.Tensor, pair_image: torch.Tensor,
                         mask_rows: torch.Tensor, layers: int = 1) -> torch.Tensor:
    """Same result as :func:`naive_logits`, one prefix per image (see the module docstring)."""
    check_visual(visual, layers)
    tokens = prefix_tokens(visual, images, layers)
    cls = masked_tail(visual, tokens, pair_image, mask_rows, layers)
    return head(visual._pool(cls)[0])
