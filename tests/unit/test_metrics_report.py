"""The evaluation report helpers: class choice for curves, long-tail rows, the paper table, input checks."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pipeline import schemas
from pipeline.report import PAPER, choose_pr_classes, evaluation_markdown, long_tail_rows
from pipeline.classes.space import ClassSpace
from pipeline.report.evaluation import evaluate_classification


def test_choose_pr_classes_and_long_tail_rows():
    ap = np.full(600, np.nan)
    ap[[3, 7, 9]] = [0.5, 0.25, 1.0]
    counts = np.zeros(600, dtype=int)
    counts[[3, 7, 9]] = [40, 1, 7]
    assert choose_pr_classes(ap, counts, []) == [3, 9, 7]         # most, median, fewest
    assert choose_pr_classes(ap, counts, [5]) == [5]
    rows = long_tail_rows(ap, counts, [f"c{i}" for i in range(600)], "n_train_images")
    assert [(r["hoi"], r["n_train_images"], r["ap"]) for r in rows] == [(7, 1, 25.0), (9, 7, 100.0), (3, 40, 50.0)]


def test_markdown_puts_the_paper_beside_our_numbers():
    cls = {"map": 12.5, "known_object_map": 20.0, "few1": 1.0, "few5": 2.0, "few10": 3.0, "few1_defr": None,
           "num_classes": {"evaluated": 5, "few1": 1, "few5": 2, "few10": 3, "few1_defr": 0}}
    text = evaluation_markdown(cls, None, {"a.parquet": "demo_only=true"}, demo=True)
    assert "| **this run** | 12.50 | 1.00 | 2.00 | 3.00 |" in text and "DEMO DATA" in text
    assert "65.60" in text and "## HICO-DET detection" not in text
    assert PAPER["hico"]["detection"][0] == {"method": "DEFR ViT-B/16", "full": 32.35, "rare": 33.45,
                                             "non_rare": 32.02}


def images_table(ids, split="test"):
    n = len(ids)
    return pa.table({"image_id": ids, "split": [split] * n, "file_name": ["x"] * n, "uri": ["x"] * n,
                     "width": [10] * n, "height": [10] * n, "positives": [[0]] * n, "negatives": [[]] * n,
                     "ambiguous": [[]] * n}, schema=schemas.IMAGES)


def classes_table():
    return ClassSpace.from_table(pa.table({"hoi": np.arange(600), "name": [f"c{i}" for i in range(600)],
                                           "n_train_images": np.ones(600, np.int32)}))


@pytest.mark.parametrize("ids, scores, message", [
    ([0, 1, 7], np.zeros((3, 600)), "image_id 7 is not a test image"),
    ([0], np.zeros((1, 600)), "lacks 1 of 2 test images"),
    ([0, 1], np.zeros((2, 599)), "599 scores, expected 600"),
    ([0, 1], np.where(np.eye(2, 600, 3) > 0, np.nan, 0.0), r"row 0 \(image_id 0\): score of HOI 3 is nan"),
])
def test_image_scores_are_checked_against_the_test_split(ids, scores, message):
    table = pa.table({"image_id": ids, "scores": list(scores.astype(np.float32))})
    with pytest.raises(ValueError, match=message):
        evaluate_classification(images_table([0, 1]), classes_table(), table)


def test_markdown_single_label_reports_both_conventions_and_detection_not_evaluated():
    cls = {"map": 40.0, "map_all_classes": 40.0, "map_with_positive": 45.5, "accuracy": 50.0, "few1": None,
           "few5": 10.0, "few10": 12.0, "num_classes": {"all": 393, "with_positive": 371, "few1": 0, "few5": 3,
                                                        "few10": 9}}
    det = {"not_evaluated": "HOI detection not evaluated: no class has an object category"}
    text = evaluation_markdown(cls, det, {}, demo=False, dataset="mpii", label_mode="single")
    assert "| **this run** | 40.00 | 45.50 | 50.00 |  |" in text and "| DEFR (ViT-B/16) |  |  |  | 55.30 |" in text
    assert "does not say which it used" in text and "all 393 classes" in text and "371 classes" in text
    assert "HOI detection not evaluated: no class has an object category." in text
    assert "| Full |" not in text


def test_markdown_of_an_own_dataset_has_no_paper_rows_and_says_what_was_not_evaluated():
    cls = {"map": 70.0, "known_object_map": None, "few1": None, "few5": None, "few10": 70.0,
           "num_classes": {"evaluated": 5, "few1": 0, "few5": 0, "few10": 2},
           "notes": {"known_object_map": "not evaluated: not every class has an object"}}
    det = {"default": {"full": 50.0, "rare": None, "non_rare": None},
           "known_object": {"full": None, "rare": None, "non_rare": None},
           "num_classes": {"full": 5, "rare": 0, "non_rare": 0}, "num_detections": 0, "num_test_pairs": 7,
           "notes": {"rare": "the dataset defines no rare split"}}
    text = evaluation_markdown(cls, det, {}, demo=False, dataset="table")
    assert "## Classification (table)" in text and "65.60" not in text and "32.35" not in text
    assert "Known-object mAP: not evaluated: not every class has an object." in text
    assert "## HOI detection" in text and "Note (rare): the dataset defines no rare split." in text
