"""The DEMO-ONLY oracle: perturbed ground truth, deterministic from its seed."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pipeline.detection.boxes import to_table
from pipeline.detection.oracle import OracleConfig, ground_truth, oracle_detections
from pipeline.schemas import PAIRS
from pipeline.classes.space import ClassSpace
from pipeline.classes.hico_vocab import hico_vocabulary

COCO = ClassSpace.hico().coco80


def _tables():
    vocab = hico_vocabulary()
    ride_bike = vocab.index("ride", "bicycle")
    hold_bike = vocab.index("hold", "bicycle")
    hold_cup = vocab.index("hold", "cup")
    human, bike, cup = [10, 10, 60, 90], [30, 40, 120, 100], [50, 20, 70, 40]
    pairs = pa.table({"image_id": [1, 1, 1, 2], "hoi": [ride_bike, hold_bike, hold_cup, hold_cup],
                      "human_box": [human, human, human, human], "object_box": [bike, bike, cup, cup]})
    pairs = pairs.cast(PAIRS)
    images = pa.table({"image_id": [1, 2, 3], "width": [160, 150, 140], "height": [128, 120, 100]})
    return images, pairs


def test_ground_truth_merges_boxes_repeated_across_pairs():
    _, pairs = _tables()
    boxes, labels = ground_truth(pairs, COCO)[1]
    assert labels.tolist() == [0, 1, 41]  # one person, one bicycle, one cup (COCO-80)
    assert boxes[1].tolist() == [30, 40, 120, 100]


def test_oracle_is_deterministic_from_its_seed_and_independent_of_row_order():
    images, pairs = _tables()
    cfg = OracleConfig(seed=3, jitter=0.05, drop_rate=0.2, false_positives=2.0)
    a = to_table(oracle_detections(images, pairs, cfg, COCO))
    b = to_table(oracle_detections(images, pairs, cfg, COCO))
    assert a.equals(b)
    reversed_images = images.take([2, 1, 0])
    c = to_table(oracle_detections(reversed_images, pairs, cfg, COCO)).sort_by("image_id")
    assert c.equals(a.sort_by("image_id"))
    d = to_table(oracle_detections(images, pairs, OracleConfig(seed=4, jitter=0.05, drop_rate=0.2,
                                                               false_positives=2.0), COCO))
    assert not d.equals(a)


def test_oracle_without_noise_returns_the_ground_truth():
    images, pairs = _tables()
    cfg = OracleConfig(seed=0, jitter=0.0, drop_rate=0.0, false_positives=0.0)
    dets = {d.image_id: d for d in oracle_detections(images, pairs, cfg, COCO)}
    boxes, labels = ground_truth(pairs, COCO)[1]
    np.testing.assert_array_equal(dets[1].boxes, boxes)
    assert dets[1].labels.tolist() == labels.tolist()
    assert len(dets[3].boxes) == 0  # no annotation, no false positives
    assert ((dets[1].scores >= 0.5) & (dets[1].scores <= 1)).all()


def test_oracle_degrades_boxes_within_range():
    images, pairs = _tables()
    dets = oracle_detections(images, pairs, OracleConfig(seed=1, jitter=0.1, drop_rate=0.5,
                                                         false_positives=5.0), COCO)
    table = to_table(dets)  # validates labels 0..79 and scores in [0, 1]
    boxes = np.asarray(table["box"].to_pylist())
    assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
    assert table.num_rows > 3  # false positives were added


@pytest.mark.parametrize("field,value", [("drop_rate", 1.5), ("jitter", -1), ("true_score", (0.5, 2))])
def test_oracle_config_is_validated(field, value):
    with pytest.raises(ValueError, match=f"detect.oracle.{field}"):
        OracleConfig(**{field: value})


def test_classes_without_a_coco_object_give_person_boxes_only():
    """A user's own classes (the table adapter) may name no COCO object: their object boxes have no label."""
    images, pairs = _tables()
    coco = COCO.copy()
    coco[pairs["hoi"].to_numpy()[2]] = -1  # "hold cup" has no COCO object in this label space
    boxes, labels = ground_truth(pairs, coco)[1]
    assert labels.tolist() == [0, 1]
