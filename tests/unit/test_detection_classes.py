"""Detector class names and label spaces -> COCO-80 labels; the post-processing of boxes."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.detection.boxes import (DEGENERATE, LIKELY_XYWH, NON_FINITE, OUTSIDE, Counts, ImageDetections,
                                      box_problems, finish, to_table)
from pipeline.classes.coco import class_map, normalize, to_coco80
from pipeline.schemas import DETECTIONS

# MMDetection's CocoDataset.METAINFO["classes"] (mmdet 3.3.0), spelled with spaces.
MMDET_COCO = ("person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
              "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
              "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
              "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
              "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
              "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
              "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
              "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
              "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
              "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush")


def test_mmdet_coco_names_map_to_identity():
    assert class_map(list(MMDET_COCO)).tolist() == list(range(80))


def test_hico_alphabetical_order_and_aliases_map_by_name():
    from pipeline.classes.hico_vocab import hico_vocabulary

    objects = hico_vocabulary().objects  # HICO's alphabetical order
    assert class_map(objects).tolist() == hico_vocabulary().object_to_coco80.tolist()
    assert normalize("TV-Monitor") == "tv" and normalize("Motorbike") == "motorcycle"
    assert class_map(["person", "aeroplane", "sofa"]).tolist() == [0, 4, 57]


def test_coco_names_are_a_coco_fact_that_hico_agrees_with():
    from pipeline.classes.hico_vocab import hico_vocabulary
    from pipeline.classes.coco import COCO80_NAMES, coco80_label

    assert list(COCO80_NAMES) == hico_vocabulary().coco80_names
    assert coco80_label("Sports Ball") == 32 and coco80_label("person") == 0 and coco80_label("unicorn") is None


def test_non_coco_detector_is_refused_with_the_names():
    with pytest.raises(ValueError, match=r"not COCO-like.*'traffic cone'.*allow_unmapped_classes"):
        class_map(["person", "car", "traffic cone"], source="my.pth")
    with pytest.raises(ValueError, match="no 'person' class"):
        class_map(["cat", "dog"])
    with pytest.raises(ValueError, match="same COCO class"):
        class_map(["person", "tv", "tvmonitor"])


def test_unmapped_classes_allowed_on_request():
    assert class_map(["person", "traffic cone", "car"], allow_unmapped=True).tolist() == [0, -1, 2]


def test_label_spaces():
    assert to_coco80([0, 79], "coco80").tolist() == [0, 79]
    assert to_coco80([49, 44, 9], "hico80").tolist() == [0, 3, 1]  # person, motorcycle, bicycle
    assert to_coco80([1, 13, 90], "coco91").tolist() == [0, 11, 79]
    with pytest.raises(ValueError, match=r"label\(s\) \[12\] are not valid in label space 'coco91'"):
        to_coco80([1, 12], "coco91", source="f.json")
    with pytest.raises(ValueError, match="not valid"):
        to_coco80([80], "hico80")
    with pytest.raises(ValueError, match="unknown label space"):
        to_coco80([1], "voc")


def test_label_spaces_agree_with_the_literature_tables(shared_hico):
    """coco91tohico80.json / coco80tohico80.json (fredzzhang/hicodet) against our conversions."""
    hico_to_coco = to_coco80(np.arange(80), "hico80")
    for name, space, offset in (("coco91tohico80.json", "coco91", 0), ("coco80tohico80.json", "coco80", 1)):
        table = json.loads((shared_hico / name).read_text())
        for src, hico in table.items():
            assert to_coco80([int(src) - offset], space)[0] == hico_to_coco[hico], (name, src)


def test_finish_clips_floors_caps_and_counts():
    det = ImageDetections(7, np.array([[-5, 2, 50, 40], [10, 10, 10, 30], [1, 1, 5, 5], [0, 0, 200, 200],
                                       [3, 3, 9, 9]], np.float32),
                          np.array([0, 1, 2, 3, 4]), np.array([0.9, 0.8, 0.01, 0.5, 0.7], np.float32))
    counts = Counts()
    out = finish(det, 100, 80, score_floor=0.05, max_per_image=2, counts=counts)
    assert out.scores.tolist() == pytest.approx([0.9, 0.7])
    assert out.boxes[0].tolist() == [0, 2, 50, 40]
    assert counts.as_dict() == {"boxes_in": 5, "clipped": 2, "boxes_rejected": 1, "below_score_floor": 1,
                                "over_max_per_image": 1}
    # The dropped box is a reject row naming the image, the box and the reason; filtered boxes are not.
    assert counts.rejects == [("", "image 7 box [10.0, 10.0, 10.0, 30.0]", DEGENERATE)]
    table = to_table([out, ImageDetections(8, np.zeros((0, 4)), np.zeros(0), np.zeros(0))])
    assert table.schema.equals(DETECTIONS) and table["image_id"].to_pylist() == [7, 7]


def test_boxes_written_as_xywh_are_named_as_such():
    rng = np.random.default_rng(0)
    xy = rng.uniform(100, 300, (20, 2))
    wh = rng.uniform(20, 90, (20, 2))        # smaller than x, y: read as x1, y1, x2, y2 they are inverted
    boxes = np.concatenate([xy, wh], axis=1)
    _, reasons, _ = box_problems(boxes, 640, 480)
    assert reasons == [LIKELY_XYWH] * 20
    _, reasons, _ = box_problems(np.concatenate([xy, xy + wh], axis=1), 640, 480)
    assert reasons == [None] * 20
    _, reasons, changed = box_problems([[700, 0, 800, 10], [-5, 0, 10, 10], [0, 0, np.inf, 1]], 640, 480)
    assert reasons == [OUTSIDE, None, NON_FINITE] and changed.tolist() == [False, True, False]


def test_to_table_refuses_out_of_range_values():
    bad = ImageDetections(1, np.zeros((1, 4)), np.array([80]), np.array([0.5]))
    with pytest.raises(ValueError, match="COCO-80"):
        to_table([bad])
    with pytest.raises(ValueError, match=r"scores must be in \[0, 1\]"):
        to_table([ImageDetections(1, np.zeros((1, 4)), np.array([0]), np.array([1.5]))])
