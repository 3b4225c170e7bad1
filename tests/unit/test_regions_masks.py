"""Box -> patch coverage rules and the additive CLS mask row."""
import numpy as np
import pytest
import torch

from pipeline.regions.masks import cls_mask_row, full_mask, pair_coverage, patch_coverage

GRID = (4, 4)
WH = np.array([40.0, 40.0])  # 10 px per patch


def kept(box, rule, frac=0.5, wh=WH, grid=GRID):
    keep = patch_coverage(np.array([box], float), wh, grid, rule, frac)[0].reshape(grid)
    return {(int(r), int(c)) for r, c in zip(*np.nonzero(keep))}


@pytest.mark.parametrize("rule", ["any", "center", "fraction"])
def test_box_on_patch_borders_keeps_exactly_its_patches(rule):
    assert kept([10, 0, 30, 10], rule) == {(0, 1), (0, 2)}


def test_partial_coverage_rules_differ():
    box = [6, 0, 20, 10]      # 40% of patch (0,0), all of (0,1)
    assert kept(box, "any") == {(0, 0), (0, 1)}
    assert kept(box, "center") == {(0, 1)}        # centre of (0,0) is x=5 < 6
    assert kept(box, "fraction", 0.5) == {(0, 1)}
    assert kept(box, "fraction", 0.3) == {(0, 0), (0, 1)}


def test_box_smaller_than_a_patch_falls_back_to_overlap():
    box = [6, 6, 14, 14]      # touches 4 patches, covers no centre, <50% of each
    assert kept(box, "center") == kept(box, "fraction") == kept(box, "any") == {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_boxes_scale_with_each_image_size():
    # A squash resize: the top-left quarter of any image is the top-left quarter of the grid.
    wh = np.array([[320.0, 160.0], [100.0, 300.0]])
    boxes = np.array([[0, 0, 160, 80], [0, 0, 50, 150]], float)
    keep = patch_coverage(boxes, wh, (14, 14), "any").reshape(2, 14, 14)
    expect = np.zeros((14, 14), bool)
    expect[:7, :7] = True
    assert (keep == expect).all()


def test_pair_coverage_is_the_union():
    a = pair_coverage(np.array([[0, 0, 10, 10]], float), np.array([[30, 30, 40, 40]], float), WH, GRID)
    assert np.flatnonzero(a[0]).tolist() == [0, 15]


def test_cls_row_is_additive_zero_or_minus_inf():
    keep = np.array([[True, False, False, True]])
    row = cls_mask_row(keep, torch.float64)
    assert row.dtype == torch.float64
    assert row.tolist() == [[0.0, 0.0, float("-inf"), float("-inf"), 0.0]]
    full = full_mask(row)
    assert full.shape == (1, 5, 5)
    assert torch.equal(full[0, 0], row[0]) and (full[0, 1:] == 0).all()


def test_bad_rule_and_fraction_raise():
    with pytest.raises(ValueError, match="patch rule"):
        patch_coverage(np.zeros((1, 4)), WH, GRID, "middle")
    with pytest.raises(ValueError, match="min_fraction"):
        patch_coverage(np.zeros((1, 4)), WH, GRID, "fraction", 0.0)
