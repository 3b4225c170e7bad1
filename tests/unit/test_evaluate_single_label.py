"""Classification evaluation of a single-label dataset (MPII), end to end from prepared tables: perfect
scores give 100 in both published conventions, reversed scores give a known lower bound, and a test image
without exactly one positive is refused by name."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipeline.demo.activities import generate_mpii
from pipeline.datasets.adapters import prepare_dataset
from pipeline.classes.space import ClassSpace
from pipeline.report.evaluation import evaluate_classification


@pytest.fixture(scope="module")
def mpii(tmp_path_factory):
    raw = tmp_path_factory.mktemp("mpii") / "raw"
    generate_mpii(raw, n_train=40, n_val=16, n_test=4, seed=1)
    return prepare_dataset("mpii", str(raw), {"annotations": "activities.csv"}, val_fraction=0.25)


def split_of(out) -> pa.Table:
    return out.images.filter(pc.equal(out.images.column("split"), "test"))


def scores_for(test: pa.Table, num_classes: int, right: float, wrong: float) -> pa.Table:
    """One score vector per test image: ``right`` at its positive class, ``wrong`` elsewhere."""
    rows = []
    for positives in test.column("positives").to_pylist():
        s = np.full(num_classes, wrong, np.float32)
        s[positives[0]] = right
        rows.append(s)
    return pa.table({"image_id": test.column("image_id"), "scores": pa.array(rows, pa.list_(pa.float32()))})


def only_classes_with_a_test_positive(out) -> tuple[pa.Table, pa.Table]:
    """(test images, classes) restricted to the classes that have a test positive, indices renumbered."""
    test = split_of(out)
    keep = sorted({p[0] for p in test.column("positives").to_pylist()})
    new = {old: i for i, old in enumerate(keep)}
    remap = [[new[c] for c in lst if c in new] for lst in test.column("positives").to_pylist()]
    negatives = [[new[c] for c in lst if c in new] for lst in test.column("negatives").to_pylist()]
    test = test.set_column(test.schema.get_field_index("positives"), "positives", pa.array(remap, pa.list_(pa.int16())))
    test = test.set_column(test.schema.get_field_index("negatives"), "negatives",
                           pa.array(negatives, pa.list_(pa.int16())))
    classes = out.classes.take(pa.array(keep)).set_column(0, "hoi", pa.array(range(len(keep)), out.classes.schema.field(0).type))
    return test, classes


def test_perfect_scores_give_100_in_both_conventions(mpii):
    test, classes = only_classes_with_a_test_positive(mpii)
    space = ClassSpace.from_table(classes, dataset="mpii", label_mode="single")
    m = evaluate_classification(test, space, scores_for(test, classes.num_rows, 10.0, 0.0)).metrics
    assert m["map_all_classes"] == pytest.approx(100.0) and m["map_with_positive"] == pytest.approx(100.0)
    assert m["accuracy"] == pytest.approx(100.0)
    assert (m["num_classes"]["all"], m["num_classes"]["with_positive"]) == (classes.num_rows, classes.num_rows)


def test_classes_without_a_test_positive_count_as_0_in_the_all_classes_convention(mpii):
    """The whole label space (18 classes, of which the 16 test images use only some): perfect scores give
    100 over the classes with a positive and (with positive / all) x 100 over all classes."""
    test = split_of(mpii)
    with_positive = len({p[0] for p in test.column("positives").to_pylist()})
    space = ClassSpace.from_table(mpii.classes, dataset="mpii", label_mode="single")
    m = evaluate_classification(mpii.images, space, scores_for(test, mpii.classes.num_rows, 10.0, 0.0)).metrics
    assert 0 < with_positive < mpii.classes.num_rows
    assert m["map_with_positive"] == pytest.approx(100.0)
    assert m["map_all_classes"] == pytest.approx(100.0 * with_positive / mpii.classes.num_rows)
    assert m["num_test_images"] == test.num_rows == 16


def test_wrong_scores_rank_every_positive_last(mpii):
    test, classes = only_classes_with_a_test_positive(mpii)
    space = ClassSpace.from_table(classes, dataset="mpii", label_mode="single")
    m = evaluate_classification(test, space, scores_for(test, classes.num_rows, 0.0, 10.0)).metrics
    # Each class's n_c positives rank last among the N test images: precision rises to n_c / N at full
    # recall, so the interpolated (all-points) AP is n_c / N; the mean over the K classes is 1 / K.
    assert m["accuracy"] == 0.0
    assert m["map_with_positive"] == pytest.approx(100.0 / classes.num_rows)


def test_a_test_image_without_exactly_one_positive_is_refused_by_name(mpii):
    test = split_of(mpii).sort_by("image_id")
    positives = test.column("positives").to_pylist()
    image_id = test.column("image_id")[3].as_py()
    zeros = pa.table({"image_id": test.column("image_id"),
                      "scores": pa.array([np.zeros(mpii.classes.num_rows, np.float32)] * test.num_rows,
                                         pa.list_(pa.float32()))})
    negatives = test.column("negatives").to_pylist()
    second = (positives[3][0] + 1) % mpii.classes.num_rows
    space = ClassSpace.from_table(mpii.classes, dataset="mpii", label_mode="single")
    for broken in ([positives[3][0], second], []):
        bad = pa.array(positives[:3] + [broken] + positives[4:], pa.list_(pa.int16()))
        images = test.set_column(test.schema.get_field_index("positives"), "positives", bad)
        neg = negatives[:3] + [[c for c in negatives[3] if c not in broken]] + negatives[4:]
        images = images.set_column(images.schema.get_field_index("negatives"), "negatives",
                                   pa.array(neg, pa.list_(pa.int16())))
        with pytest.raises(ValueError, match=rf"test image_id {image_id} has {len(broken)} positive classes; "
                                             "a single-label dataset has exactly one per image"):
            evaluate_classification(images, space, zeros)
