"""Label spaces of detectors and detection files, mapped onto COCO-80 contiguous labels (person = 0).

A detector is usable when its classes are COCO objects under some spelling (MMDetection's "traffic light",
HICO's "traffic_light", VOC-era "motorbike"...): each class name is normalized and looked up among the
80 COCO names. Detection files use integer labels in one of three spaces:

- ``coco80``: contiguous COCO order, person = 0 (MMDetection, this pipeline);
- ``coco91``: the original COCO category ids 1..90 with gaps (torchvision detectors);
- ``hico80``: HICO's alphabetical object order, person = 49 (the per-image JSON detections shared by
  the HICO-DET literature, e.g. the DRG / SCG / UPT fine-tuned detections).
"""
from __future__ import annotations

import numpy as np

from pipeline.choices import LABEL_SPACES

# The 80 COCO classes in contiguous order (person = 0), spelled with underscores (HICO's spelling).
COCO80_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic_light",
    "fire_hydrant", "stop_sign", "parking_meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports_ball", "kite", "baseball_bat", "baseball_glove", "skateboard", "surfboard",
    "tennis_racket", "bottle", "wine_glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot_dog", "pizza", "donut", "cake", "chair", "couch",
    "potted_plant", "bed", "dining_table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell_phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy_bear", "hair_drier", "toothbrush")

# COCO category ids (1..90) of the 80 contiguous classes, in order.
COCO91_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27,
              28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53,
              54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80,
              81, 82, 84, 85, 86, 87, 88, 89, 90)

# Other spellings of COCO classes found in detector configs (VOC, Objects365-style, older mmdet).
ALIASES = {
    "aeroplane": "airplane", "motorbike": "motorcycle", "sofa": "couch", "tvmonitor": "tv",
    "tv_monitor": "tv", "television": "tv", "diningtable": "dining_table", "pottedplant": "potted_plant",
    "mobile_phone": "cell_phone", "cellphone": "cell_phone", "hair_dryer": "hair_drier",
    "doughnut": "donut", "ball": "sports_ball", "hotdog": "hot_dog", "teddy": "teddy_bear",
    "wineglass": "wine_glass", "firehydrant": "fire_hydrant", "stopsign": "stop_sign",
    "trafficlight": "traffic_light", "parkingmeter": "parking_meter", "people": "person",
    "human": "person", "pedestrian": "person",
}


def normalize(name: str) -> str:
    """Lower case, spaces and hyphens to underscores, aliases resolved ("Traffic Light" -> traffic_light)."""
    key = "_".join(str(name).strip().lower().replace("-", " ").split())
    return ALIASES.get(key, key)


def coco80_names() -> list[str]:
    """The 80 COCO class names in contiguous order, HICO spelling (underscores)."""
    return list(COCO80_NAMES)


def coco80_label(name: str) -> int | None:
    """The COCO-80 label of an object name in any spelling ("sports ball", "Sports_Ball"), None if it is
    not a COCO class."""
    key = normalize(name)
    return COCO80_NAMES.index(key) if key in COCO80_NAMES else None


def class_map(class_names: list[str], allow_unmapped: bool = False,
              source: str = "detector") -> np.ndarray:
    """Maps a detector's class names to COCO-80 labels.

    Args:
        class_names: the detector's classes, in its label order.
        allow_unmapped: keep going when some classes are not COCO objects (their detections are then
            dropped and counted); by default that is an error, since the detector is not COCO-like.
        source: what the names came from, for error messages (a config or checkpoint path).

    Returns:
        int64 array [len(class_names)]: the COCO-80 label of each class, -1 for unmapped ones.

    Raises:
        ValueError: no person class, duplicate mappings, or (without ``allow_unmapped``) any class
            that is not a COCO object; the message lists the offending names.
    """
    index = {n: i for i, n in enumerate(coco80_names())}
    mapped = np.array([index.get(normalize(n), -1) for n in class_names], dtype=np.int64)
    unknown = [n for n, m in zip(class_names, mapped) if m < 0]
    if 0 not in mapped:
        raise ValueError(f"{source}: the detector's {len(class_names)} classes have no 'person' class "
                         f"(first ones: {list(class_names)[:8]}); HOI detection needs a COCO-like "
                         "detector whose classes include person")
    if unknown and not allow_unmapped:
        raise ValueError(f"{source}: the detector is not COCO-like: {len(unknown)} of its "
                         f"{len(class_names)} classes are not COCO objects ({unknown[:10]}"
                         f"{' ...' if len(unknown) > 10 else ''}); use a COCO-trained detector, or set "
                         "detect.mmdet.allow_unmapped_classes: true to drop those classes' boxes")
    used = mapped[mapped >= 0]
    dup = sorted({coco80_names()[m] for m in used if (used == m).sum() > 1})
    if dup:
        raise ValueError(f"{source}: several detector classes map to the same COCO class(es) {dup}")
    return mapped


def to_coco80(labels: np.ndarray, space: str, source: str = "labels") -> np.ndarray:
    """Converts integer labels from ``space`` (coco80 | coco91 | hico80) to COCO-80 contiguous.

    Raises:
        ValueError: unknown space, or a label outside it (names ``source`` and the bad values).
    """
    labels = np.asarray(labels, dtype=np.int64)
    if space == "coco80":
        table = np.arange(80)
    elif space == "hico80":  # a HICO file format: the order is a fact of the HICO adapter
        from pipeline.classes.hico_vocab import hico_vocabulary

        table = hico_vocabulary().object_to_coco80
    elif space == "coco91":
        table = np.full(91, -1, dtype=np.int64)
        table[list(COCO91_IDS)] = np.arange(80)
    else:
        raise ValueError(f"{source}: unknown label space {space!r}; expected one of {LABEL_SPACES}")
    bad = labels[(labels < 0) | (labels >= len(table))]
    if bad.size == 0:
        bad = labels[table[labels] < 0]
    if bad.size:
        raise ValueError(f"{source}: label(s) {sorted(set(bad.tolist()))[:10]} are not valid in label "
                         f"space {space!r} (coco80: 0..79, person 0; coco91: COCO category ids 1..90; "
                         "hico80: 0..79 alphabetical, person 49)")
    return table[labels]
