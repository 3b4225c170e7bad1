"""Classification losses on logits with targets coded +1 (positive), -1 (negative), 0 (excluded).

``lse_sign_loss`` is the paper's eq. (2); BCE, weighted BCE and focal are the baselines of its Table 7.
Every one of these returns the mean over the batch of a per-image sum over the classes with a non-zero
target. ``softmax_ce_loss`` is the single-label loss (MPII: one activity per image): the cross entropy of
a softmax over the classes not excluded, which needs exactly one positive per image; a single-label
dataset codes its images +1 for their class and -1 for every other one (``pipeline.datasets.build``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.choices import LOSSES


def _check(logits: torch.Tensor, targets: torch.Tensor) -> None:
    if logits.shape != targets.shape or logits.ndim != 2:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must both be [B, C]")


def lse_sign_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``log(1 + sum_{i: y_i != 0} exp(-y_i s_i))`` (eq. 2).

    Computed as ``logsumexp([0, -y*s (masked)])``: stable for any logit magnitude, and its gradient is the
    softmax of eq. (3)-(4) over the non-excluded classes plus the constant column.
    """
    _check(logits, targets)
    y = targets.to(logits.dtype)
    z = (-y * logits).masked_fill(y == 0, float("-inf"))
    z = torch.cat([torch.zeros_like(z[:, :1]), z], dim=1)
    return torch.logsumexp(z.float(), dim=1).mean()


def bce_loss(logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor | None = None,
             neg_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross entropy summed over non-excluded classes, mean over the batch.

    ``pos_weight`` / ``neg_weight`` ([C]) weight the positive and negative terms per class (weighted BCE).
    """
    _check(logits, targets)
    y = targets.to(torch.float32)
    s = logits.float()
    # -log sigmoid(y s) is the BCE term for y in {+1, -1}; softplus keeps it finite at |s| = 1e4.
    loss = F.softplus(-y * s)
    w = (y != 0).float()
    if pos_weight is not None:
        w = torch.where(y > 0, w * pos_weight.float(), w)
    if neg_weight is not None:
        w = torch.where(y < 0, w * neg_weight.float(), w)
    return (loss * w).sum(dim=1).mean()


def class_balance_weights(targets: torch.Tensor, eps: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class (pos_weight, neg_weight) from training targets [N, C]: the paper's "weighted by the
    positive-negative ratio per class", normalised so positives and negatives of a class weigh the same
    in total (``w_pos = n/(2 n_pos)``, ``w_neg = n/(2 n_neg)``, counts smoothed by ``eps``)."""
    y = torch.as_tensor(targets)
    n_pos = (y > 0).sum(0).float() + eps
    n_neg = (y < 0).sum(0).float() + eps
    n = n_pos + n_neg
    return n / (2 * n_pos), n / (2 * n_neg)


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0, alpha: float = 0.25) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al.; gamma 2, alpha 0.25), summed over non-excluded classes, batch mean."""
    _check(logits, targets)
    y = targets.to(torch.float32)
    s = logits.float()
    ce = F.softplus(-y * s)                       # -log p_t
    p_t = torch.exp(-ce)
    a_t = torch.where(y > 0, torch.full_like(s, alpha), torch.full_like(s, 1 - alpha))
    loss = a_t * (1 - p_t) ** gamma * ce
    return (loss * (y != 0).float()).sum(dim=1).mean()


def softmax_ce_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-log softmax(s)[positive]``, the softmax over the non-excluded classes.

    Raises:
        ValueError: a row without exactly one positive (the loss is for single-label data).
    """
    _check(logits, targets)
    positive = targets > 0
    counts = positive.sum(dim=1)
    if (counts != 1).any():
        row = int(torch.nonzero(counts != 1)[0, 0])
        raise ValueError(f"softmax_ce: image {row} of the batch has {int(counts[row])} positive classes; the loss "
                         "needs exactly one (single-label data)")
    s = logits.float().masked_fill(targets == 0, float("-inf"))
    return (torch.logsumexp(s, dim=1) - s[positive]).mean()


def check_single_label(train_targets: torch.Tensor) -> None:
    """Raises naming the first training image without exactly one positive class."""
    counts = (torch.as_tensor(train_targets) > 0).sum(dim=1)
    bad = torch.nonzero(counts != 1)
    if len(bad):
        row = int(bad[0, 0])
        raise ValueError(f"train.loss softmax_ce needs exactly one positive class per training image (single-label "
                         f"data such as MPII); training image {row} has {int(counts[row])} ({int(len(bad))} such "
                         "images): use lse_sign, bce, weighted_bce or focal for multi-label data")


def make_loss(name: str, train_targets: torch.Tensor | None = None):
    """Returns ``fn(logits, targets)`` for a loss name in :data:`LOSSES` (weighted BCE needs the train targets;
    softmax CE checks them: one positive per image)."""
    if name == "lse_sign":
        return lse_sign_loss
    if name == "bce":
        return bce_loss
    if name == "focal":
        return focal_loss
    if name == "softmax_ce":
        if train_targets is not None:
            check_single_label(train_targets)
        return softmax_ce_loss
    if name == "weighted_bce":
        if train_targets is None:
            raise ValueError("loss 'weighted_bce' needs the training targets for its class weights")
        pw, nw = class_balance_weights(train_targets)

        def weighted(logits, targets):
            return bce_loss(logits, targets, pw.to(logits.device), nw.to(logits.device))
        return weighted
    raise ValueError(f"train.loss {name!r}: expected one of {LOSSES}")
