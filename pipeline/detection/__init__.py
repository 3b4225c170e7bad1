"""Boxes for HOI detection: an MMDetection detector, imported detections, or a DEMO-ONLY oracle.

Every source produces the same table (:data:`pipeline.schemas.DETECTIONS`): image_id, box xyxy in
original-image pixels, label in COCO-80 contiguous order (person = 0), score in [0, 1].

- :mod:`pipeline.classes.coco`: detector class names / label spaces -> COCO-80 labels.
- :mod:`pipeline.detection.boxes`: clipping, unusable boxes (reject rows), score floor, per-image cap, the table.
- :mod:`pipeline.detection.detector_checkpoints`: weights-only checkpoint loading with an allow-list.
- :mod:`pipeline.detection.mmdet_backend`: config resolution, strict weight loading, batched inference.
- :mod:`pipeline.detection.precomputed`: per-image JSON (HICO-DET literature), a boxes JSON (image name ->
  boxes with COCO names) and Parquet/CSV import.
- :mod:`pipeline.inference.detect_split`: the detect stage's work: one backend over a split, checked for losses.
- :mod:`pipeline.detection.oracle`: DEMO ONLY, perturbed ground-truth boxes.

The detector runs on the inference engine's pool (:mod:`pipeline.inference.detector_predictor`).
"""
