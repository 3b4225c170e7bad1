"""An MMDetection detector on the inference engine: images -> boxes, in COCO-80 labels and original pixels.

Each actor builds the detector once (:class:`pipeline.detection.mmdet_backend.MMDetDetector`) and
post-processes its boxes with the detect stage's rules (:func:`pipeline.detection.boxes.finish`: clip,
drop unusable boxes as reject rows, score floor, per-image cap). Used by the detect stage and, inside the
regional-scoring predictor, by ``defr detect --detector``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from pipeline.detection.boxes import Counts, ImageDetections, finish

from pipeline.placement import Placement
from pipeline.inference.engine import PoolRun, run_predictor


@dataclass
class DetectorSpec:
    """Everything an actor needs to build its detector and post-process (plain data: it is shipped)."""
    config: str
    checkpoint: str
    test_scale: list[int] | None = None
    trusted_checkpoint: bool = False
    allow_unmapped_classes: bool = False
    seed: int = 0
    score_floor: float = 0.05
    max_per_image: int = 100

    def build(self, device: str = "cpu"):
        """The :class:`MMDetDetector` (raises naming the config / checkpoint when they are bad)."""
        from pipeline.detection.mmdet_backend import MMDetDetector

        return MMDetDetector(self.config, self.checkpoint, device=device, test_scale=self.test_scale,
                             trusted_checkpoint=self.trusted_checkpoint,
                             allow_unmapped_classes=self.allow_unmapped_classes, seed=self.seed)

    @property
    def source(self) -> str:
        """The ``source`` of the reject rows of its boxes."""
        return f"mmdet {self.config} ({self.checkpoint})"


def add_detector_arguments(group) -> None:
    """The ``--detector*`` options of ``defr detect`` and ``defr serve`` (an argparse group): a spec's fields."""
    group.add_argument("--detector", help="MMDetection config: a file, or a config name bundled with mmdet")
    group.add_argument("--detector-checkpoint", help="its weights (.pth / .safetensors, path or URI); "
                                                     "'random': random weights, TESTS / DEMO ONLY")
    group.add_argument("--detector-scale", type=int, nargs=2, metavar=("W", "H"),
                       help="test size (default: the config's)")
    group.add_argument("--trusted-checkpoint", action="store_true", help="full pickle load (only for files you trust)")
    group.add_argument("--detector-seed", type=int, default=0, help="seed of random detector weights")


class BoxDetector:
    """The detector and its post-processing, for any predictor that needs boxes of decoded images."""

    def __init__(self, spec: DetectorSpec, device: str = "cpu"):
        self.spec = spec
        self.detector = spec.build(device)

    def detect(self, arrays: list[np.ndarray], image_ids: list[int], names: list[str]
               ) -> list[tuple[ImageDetections, Counts, int]]:
        """Per image: (kept detections, counts with the reject rows of its dropped boxes, boxes of
        non-COCO classes dropped)."""
        out = []
        for arr, image_id, name, (boxes, labels, scores, unmapped) in zip(
                arrays, image_ids, names, self.detector.predict(arrays)):
            counts = Counts()
            h, w = arr.shape[:2]
            det = finish(ImageDetections(image_id, boxes, labels, scores), w, h, self.spec.score_floor,
                         self.spec.max_per_image, counts, source=self.spec.source, image=name)
            out.append((det, counts, unmapped))
        return out


BOX_REPORT = [("box_rejects", pa.list_(pa.string())), ("box_reject_items", pa.list_(pa.string())),
              ("boxes_in", pa.int64()), ("clipped", pa.int64()), ("below_floor", pa.int64()),
              ("over_cap", pa.int64()), ("unmapped", pa.int64())]


def box_report(counts: Counts, unmapped: int = 0) -> dict:
    """The per-image columns of :data:`BOX_REPORT`."""
    return {"box_rejects": [r[2] for r in counts.rejects], "box_reject_items": [r[1] for r in counts.rejects],
            "boxes_in": counts.boxes, "clipped": counts.clipped, "below_floor": counts.below_floor,
            "over_cap": counts.over_cap, "unmapped": unmapped}


class DetectorPredictor:
    """Predictor: image -> its boxes (flat xyxy), COCO-80 labels and scores, with what was dropped."""

    schema = pa.schema([("boxes", pa.list_(pa.float32())), ("labels", pa.list_(pa.int16())),
                        ("scores", pa.list_(pa.float32())), *BOX_REPORT])

    def __init__(self, spec: dict, device: str = "cpu"):
        self.boxes = BoxDetector(DetectorSpec(**spec), device)

    def prepare(self, image, row: dict) -> np.ndarray:
        return np.asarray(image)

    def __call__(self, arrays: list[np.ndarray], rows: list[dict]) -> pa.Table:
        found = self.boxes.detect(arrays, [r["image_id"] for r in rows], [_name(r) for r in rows])
        out = [{"boxes": d.boxes.reshape(-1).tolist(), "labels": d.labels.tolist(), "scores": d.scores.tolist(),
                **box_report(c, unmapped)} for d, c, unmapped in found]
        return pa.Table.from_pylist(out, schema=self.schema)


def _name(row: dict) -> str:
    return str(row.get("file_name") or row.get("name") or f"image {row['image_id']}")


def detect_images(images: pa.Table, spec: DetectorSpec, placement: Placement, *, ray: bool = True
                  ) -> tuple[list[ImageDetections], Counts, PoolRun]:
    """Runs the detector over ``images`` (image_id, uri, width, height; optional file_name).

    Returns:
        (detections of the readable images sorted by image_id, counts with the reject rows of dropped
        boxes, the pool run: its ``rejects`` are the unreadable images, its ``info`` actors and device).
    """
    run = run_predictor(images, DetectorPredictor, {"spec": asdict(spec)}, placement, ray=ray, desc="detect")
    dets, counts = [], Counts()
    unmapped = 0
    for r in run.table.to_pylist():
        dets.append(ImageDetections(r["image_id"], np.asarray(r["boxes"], np.float32).reshape(-1, 4),
                                    np.asarray(r["labels"], np.int64), np.asarray(r["scores"], np.float32)))
        counts.add(Counts(boxes=r["boxes_in"], clipped=r["clipped"], below_floor=r["below_floor"],
                          over_cap=r["over_cap"],
                          rejects=[(spec.source, item, reason) for item, reason
                                   in zip(r["box_reject_items"], r["box_rejects"])]))
        unmapped += r["unmapped"]
    counts.extra["unmapped_classes_dropped"] = unmapped
    return dets, counts, run
