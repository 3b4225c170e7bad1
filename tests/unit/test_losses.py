"""LSE-Sign (paper eq. 2-4), the Table-7 baselines and the single-label softmax cross entropy against direct
formulas and autograd."""
import math

import pytest
import torch

from pipeline.training.losses import bce_loss, class_balance_weights, focal_loss, lse_sign_loss, make_loss, softmax_ce_loss


def _random(b=4, c=7, seed=0, zero_frac=0.3):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(b, c, generator=g, dtype=torch.float64) * 3
    y = torch.where(torch.rand(b, c, generator=g) < 0.5, 1.0, -1.0).double()
    y[torch.rand(b, c, generator=g) < zero_frac] = 0
    return s, y


def _direct(s, y):
    """Eq. (2) written out per image, over the classes with y != 0."""
    out = []
    for si, yi in zip(s, y):
        keep = yi != 0
        out.append(torch.log(1 + torch.exp(-yi[keep] * si[keep]).sum()))
    return torch.stack(out).mean()


def test_lse_sign_value_and_autograd_match_direct_formula():
    s, y = _random()
    s1, s2 = s.clone().requires_grad_(), s.clone().requires_grad_()
    ours, ref = lse_sign_loss(s1, y), _direct(s2, y)
    assert torch.allclose(ours.double(), ref, atol=1e-6)
    ours.backward()
    ref.backward()
    assert torch.allclose(s1.grad, s2.grad, atol=1e-6)


def test_lse_sign_gradient_is_the_closed_form_softmax_of_eq_3_4():
    s, y = _random(seed=1)
    s = s.requires_grad_()
    lse_sign_loss(s, y).backward()
    e = torch.exp(-y * s.detach()) * (y != 0)
    closed = -y * e / (1 + e.sum(dim=1, keepdim=True)) / s.shape[0]  # / B: the batch mean
    assert torch.allclose(s.grad, closed, atol=1e-7)


@pytest.mark.parametrize("loss", [lse_sign_loss, bce_loss, focal_loss])
def test_finite_at_extreme_logits(loss):
    s = torch.tensor([[1e4, -1e4, 1e4, -1e4]], requires_grad=True)
    y = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    value = loss(s, y)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(s.grad).all()
    assert value.item() > 1e3  # the two wrong-signed logits dominate


@pytest.mark.parametrize("loss", [lse_sign_loss, bce_loss, focal_loss])
def test_target_zero_classes_contribute_nothing(loss):
    s, y = _random(seed=2)
    y[:, 0] = 0
    s = s.requires_grad_()
    base = loss(s, y)
    base.backward()
    assert torch.all(s.grad[:, 0] == 0)
    s2 = s.detach().clone()
    s2[:, 0] = torch.randn(s.shape[0]) * 1e3  # anything in an excluded column leaves the loss unchanged
    assert torch.allclose(loss(s2, y), base.detach())
    assert loss(s.detach(), torch.zeros_like(y)).item() == 0.0


def test_bce_and_focal_match_direct_formulas():
    s, y = _random(seed=3)
    p = torch.sigmoid(s)
    t = (y > 0).double()
    mask = (y != 0).double()
    bce = -(t * torch.log(p) + (1 - t) * torch.log(1 - p))
    assert torch.allclose(bce_loss(s, y).double(), (bce * mask).sum(1).mean(), atol=1e-5)
    p_t = torch.where(t > 0, p, 1 - p)
    a_t = torch.where(t > 0, 0.25, 0.75)
    focal = -a_t * (1 - p_t) ** 2 * torch.log(p_t)
    assert torch.allclose(focal_loss(s, y).double(), (focal * mask).sum(1).mean(), atol=1e-5)


def test_weighted_bce_balances_positive_and_negative_mass():
    y = torch.tensor([[1.0, -1], [-1, -1], [-1, 1], [-1, 0]])
    pw, nw = class_balance_weights(y, eps=0)
    n_pos, n_neg = (y > 0).sum(0), (y < 0).sum(0)
    assert torch.allclose(pw * n_pos, nw * n_neg)
    fn = make_loss("weighted_bce", y)
    # At logit 0 every term is log 2 times its weight. make_loss smooths counts by 1: class 0 has 1+1
    # positives, 3+1 negatives (w_pos 6/4, w_neg 6/8); class 1 has 1+1 and 2+1 (row 3 excluded: 5/4, 5/6).
    # Rows: 6/4 + 5/6, 6/8 + 5/6, 6/8 + 5/4, 6/8 + 0 = 20/3 in all; batch mean 5/3.
    assert fn(torch.zeros(4, 2), y).item() == pytest.approx(5 / 3 * math.log(2), rel=1e-5)


def test_unknown_loss_and_bad_shapes_raise():
    with pytest.raises(ValueError, match="expected one of"):
        make_loss("hinge")
    with pytest.raises(ValueError, match="weighted_bce"):
        make_loss("weighted_bce")
    with pytest.raises(ValueError, match=r"\[B, C\]"):
        lse_sign_loss(torch.zeros(2, 3), torch.zeros(2, 4))


def _single_label(b=5, c=6, seed=3):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(b, c, generator=g, dtype=torch.float64) * 4
    label = torch.randint(0, c, (b,), generator=g)
    y = -torch.ones(b, c, dtype=torch.float64)
    y[torch.arange(b), label] = 1
    return s, y, label


def test_softmax_ce_is_torch_cross_entropy_on_single_label_coding():
    """One positive (+1) and every other class negative (-1): the loss is the usual cross entropy."""
    s, y, label = _single_label()
    s1, s2 = s.clone().requires_grad_(), s.clone().requires_grad_()
    ours, ref = softmax_ce_loss(s1, y), torch.nn.functional.cross_entropy(s2, label)
    assert torch.allclose(ours.double(), ref, atol=1e-6)
    ours.backward(), ref.backward()
    assert torch.allclose(s1.grad, s2.grad, atol=1e-6)
    big = torch.tensor([[1e4, -1e4, 0.0]], requires_grad=True)
    value = softmax_ce_loss(big, torch.tensor([[-1.0, 1.0, -1.0]]))
    value.backward()
    assert torch.isfinite(value) and value.item() > 1e3 and torch.isfinite(big.grad).all()


def test_softmax_ce_excludes_zero_targets_and_refuses_multi_label_rows():
    s, y, label = _single_label()
    other = (label + 1) % s.shape[1]
    y[torch.arange(len(label)), other] = 0           # excluded: out of the softmax
    keep = torch.ones_like(s, dtype=torch.bool)
    keep[torch.arange(len(label)), other] = False
    ref = torch.stack([torch.nn.functional.cross_entropy(si[k][None], torch.tensor([int(yi[k].argmax())]))
                       for si, yi, k in zip(s, y, keep)]).mean()
    assert torch.allclose(softmax_ce_loss(s, y).double(), ref, atol=1e-6)
    y[0, other[0]] = 1
    with pytest.raises(ValueError, match="image 0 of the batch has 2 positive classes"):
        softmax_ce_loss(s, y)
    multi = torch.tensor([[1.0, 1.0, -1.0], [1.0, -1.0, -1.0]])
    with pytest.raises(ValueError, match=r"softmax_ce needs exactly one positive .* training image 0 has 2"):
        make_loss("softmax_ce", multi)
    assert make_loss("softmax_ce", multi[1:]) is softmax_ce_loss
