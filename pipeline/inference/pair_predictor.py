"""Masked regional scoring on the inference engine: an image and its boxes -> its scored human-object pairs.

The boxes of an image come in its row (the score_regions stage: the detect stage's table; ``defr detect
--boxes``) or from a detector that runs in the same actor (``defr detect --detector``): the image is
decoded once for both. In the actor, the boxes go through the detect stage's post-processing
(:func:`pipeline.detection.boxes.finish`: unusable boxes become reject rows), then pairs
(:func:`pipeline.regions.pairs.make_pairs`), then the shared-prefix masked scoring
(:class:`pipeline.regions.scorer.RegionScorer`) restricted to the classes of each pair's object in the
model's own label space. Optionally the actor also draws the pairs (PNG bytes) and the attention map of
the top pair (paper Fig. 4, from the forward pass that scored the pairs: no second pass), so that pictures
scale with the pool too.
"""
from __future__ import annotations

import dataclasses
import io
import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import schemas
from pipeline.detection.boxes import Counts, ImageDetections, finish
from pipeline.regions.pairs import PERSON, PairParams, make_pairs
from pipeline.regions.scorer import ScoreParams

from pipeline.inference.detector_predictor import BOX_REPORT, BoxDetector, DetectorSpec, box_report
from pipeline.inference.engine import Placement, PoolRun, run_predictor
from pipeline.inference.pictures import DrawnPair, PictureOptions, draw_pairs, png_bytes

log = logging.getLogger(__name__)

BOX_COLUMNS = [("boxes", pa.list_(pa.float32())), ("labels", pa.list_(pa.int16())), ("scores", pa.list_(pa.float32()))]
PAIR_COLUMNS = [("pairs", pa.int32()), ("hoi", pa.list_(pa.int16())), ("human_box", pa.list_(pa.float32())),
                ("object_box", pa.list_(pa.float32())), ("score", pa.list_(pa.float32()))]


class PairPredictor:
    """Predictor: image + boxes (row columns ``boxes`` flat xyxy, ``labels`` COCO-80, ``scores``; or the
    detector's) -> kept boxes, what was dropped, pairs, the top-k (pair, class) scores as lists, and
    optionally ``picture`` / ``attention`` PNG bytes.

    Args:
        checkpoint: the DEFR classifier (a ViT).
        pairs, scoring: :class:`PairParams` / :class:`ScoreParams` fields.
        boxes: ``score_floor`` and ``max_per_image`` for the boxes (0 and 0: no filter, as in the stage,
            whose boxes the detect stage filtered already).
        detector: :class:`DetectorSpec` fields, to detect the boxes in the actor; None: boxes in the rows.
        picture: :class:`PictureOptions` fields to draw each image (but those whose row has ``draw`` false);
            None: no picture.
        attention: draw the CLS attention of the top pair (paper Fig. 4) of every image (True), of the
            images of these ids (a list: the score_regions stage's plots), or of none (False).
        attention_title: the figure's title, formatted with ``image_id``, ``name`` (the top class) and
            ``score``.
        device: torch device.
        precision: the classifier's autocast (:mod:`pipeline.precision`); the detector runs fp32.
    """

    schema = pa.schema([*BOX_COLUMNS, *BOX_REPORT, *PAIR_COLUMNS, ("picture", pa.binary()), ("attention", pa.binary())])

    def __init__(self, checkpoint: str, pairs: dict, scoring: dict, boxes: dict | None = None,
                 detector: dict | None = None, picture: dict | None = None, attention: bool | list[int] = False,
                 attention_title: str = "{name} (score {score:.3f})", device: str = "cpu", precision: str = "auto"):
        from pipeline.classes.space import model_classes
        from pipeline.model import inference_transform, load_checkpoint
        from pipeline.regions.scorer import RegionScorer

        self.model = load_checkpoint(checkpoint, device)
        self.classes = model_classes(self.model.config)
        self.transform = inference_transform(self.model.config)
        self.pair_params = PairParams(**pairs)
        self.score_params = ScoreParams(**scoring)
        self.scorer = RegionScorer(self.model, self.score_params, self.classes, precision)
        self.box_filter = {"score_floor": 0.0, "max_per_image": 0, **(boxes or {})}
        self.detector = BoxDetector(DetectorSpec(**detector), device) if detector else None
        self.picture = PictureOptions(**picture) if picture is not None else None
        self.attention = attention
        self.attention_title = attention_title

    def prepare(self, image, row: dict):
        return image, self.transform(image)

    def find_boxes(self, images, rows) -> list[tuple[ImageDetections, Counts, int]]:
        """Per image: its boxes (detected, or from its row) after the post-processing, the counts and
        reject rows of what was dropped, and boxes of non-COCO classes dropped. With a detector, a row that
        carries boxes keeps them (``defr serve``: photos sent with and without boxes share a batch)."""
        names = [str(r.get("name") or r.get("file_name") or f"image {r['image_id']}") for r in rows]
        todo = [i for i, r in enumerate(rows) if self.detector is not None and r.get("boxes") is None]
        detected = dict(zip(todo, self.detector.detect([np.asarray(images[i]) for i in todo],
                                                       [rows[i]["image_id"] for i in todo],
                                                       [names[i] for i in todo]))) if todo else {}
        out = []
        for i, (image, row, name) in enumerate(zip(images, rows, names)):
            if i in detected:
                out.append(detected[i])
                continue
            counts = Counts()
            det = ImageDetections(row["image_id"], np.asarray(row["boxes"] or [], np.float32).reshape(-1, 4),
                                  np.asarray(row["labels"] or [], np.int64), np.asarray(row["scores"] or [], np.float32))
            out.append((finish(det, *image.size, self.box_filter["score_floor"], self.box_filter["max_per_image"], counts,
                               source=row["uri"], image=name), counts, 0))
        return out

    def __call__(self, items: list, rows: list[dict]) -> pa.Table:
        images = [it[0] for it in items]
        found = self.find_boxes(images, rows)
        pairs, scored, maps = self.score(items, rows, found)
        return self.assemble(images, rows, found, pairs, scored, maps)

    def score(self, items: list, rows: list[dict], found: list) -> tuple[list, pa.Table, dict]:
        """Pairs of each image, the HOI_DETECTIONS rows of the batch (top-k per image) and, for the images
        whose figure is asked, the attention maps of their top pair from the same forward pass
        (:meth:`pipeline.regions.scorer.RegionScorer.score_with_attention`)."""
        import torch

        images = [it[0] for it in items]
        ids = [r["image_id"] for r in rows]
        pairs = [make_pairs(d.boxes, d.labels, d.scores, *im.size, self.pair_params, r["image_id"])
                 for (d, _, _), im, r in zip(found, images, rows)]
        attend = ids if self.attention is True else (self.attention or ())
        scored, maps = self.scorer.score_with_attention(ids, torch.stack([it[1] for it in items]), pairs,
                                                        [tuple(float(v) for v in im.size) for im in images], attend)
        return pairs, scored, maps

    def assemble(self, images, rows, found, pairs, scored: pa.Table, maps: dict | None = None) -> pa.Table:
        """One output row per image, with its picture and attention map when asked (``maps``: image_id ->
        the top pair's attention maps)."""
        out = []
        for image, row, (det, counts, unmapped), p in zip(images, rows, found, pairs):
            mine = scored.filter(pc.equal(scored["image_id"], row["image_id"]))
            rec = {"boxes": det.boxes.reshape(-1).tolist(), "labels": det.labels.tolist(),
                   "scores": det.scores.tolist(), **box_report(counts, unmapped), "pairs": len(p),
                   "hoi": mine["hoi"].to_pylist(), "human_box": _flat(mine["human_box"]),
                   "object_box": _flat(mine["object_box"]), "score": mine["score"].to_pylist(),
                   "picture": None, "attention": None}
            if self.picture is not None and row.get("draw", True):  # `defr serve`: only where a request asks
                rec["picture"] = png_bytes(self.draw(image, det, mine, len(p)))
            if maps and row["image_id"] in maps and mine.num_rows:
                rec["attention"] = self.attention_png(image, mine, maps[row["image_id"]])
            out.append(rec)
        return pa.Table.from_pylist(out, schema=self.schema)

    def draw(self, image, det: ImageDetections, rows: pa.Table, n_pairs: int):
        """The annotated picture of one image (rows: its scored (pair, class) rows, best first)."""
        from pipeline.classes.coco import coco80_names

        names = coco80_names()
        drawn: dict[tuple, DrawnPair] = {}
        for r in rows.to_pylist():
            key = (tuple(r["human_box"]), tuple(r["object_box"]))
            if key not in drawn:
                drawn[key] = DrawnPair(r["human_box"], r["object_box"], [])
            drawn[key].lines.append((self.classes[r["hoi"]].name, r["score"]))
        in_pairs = {b for k in list(drawn)[:self.picture.pairs] for b in k}
        others = [(b.tolist(), f"{names[l].replace('_', ' ')} {s:.2f}") for b, l, s in
                  zip(det.boxes, det.labels, det.scores) if tuple(b.tolist()) not in in_pairs]
        return draw_pairs(image, list(drawn.values()), others, why_no_pairs(det, n_pairs, self.pair_params),
                          self.picture)

    def attention_png(self, image, rows: pa.Table, maps: tuple[np.ndarray, np.ndarray]) -> bytes:
        """The Fig. 4 PNG of one image: its top pair (``rows``: its scored rows, best first) and that pair's
        (unmasked, masked) attention maps."""
        from pipeline.inference.attention_maps import draw

        top = rows.slice(0, 1).to_pylist()[0]
        buf = io.BytesIO()
        draw(image, top["human_box"], top["object_box"], *maps, buf,
             self.attention_title.format(image_id=top["image_id"], name=self.classes[top["hoi"]].name,
                                         score=top["score"]))
        return buf.getvalue()


def _flat(column: pa.ChunkedArray) -> list[float]:
    return np.asarray(column.to_pylist(), np.float32).reshape(-1).tolist()


def why_no_pairs(det: ImageDetections, n_pairs: int, params: PairParams) -> str:
    """A line saying why an image has no pairs ("" when it has some)."""
    if n_pairs:
        return ""
    if len(det.labels) == 0:
        return "no boxes: no human-object pairs"
    kept = det.scores >= params.score_threshold
    people = int(((det.labels == PERSON) & kept).sum())
    if people == 0:
        low = int(((det.labels == PERSON) & ~kept).sum())
        extra = f" ({low} under the pair threshold {params.score_threshold:g})" if low else ""
        return f"no person among the {len(det.labels)} boxes{extra}: no human-object pairs"
    return f"{people} person(s) but no other box scoring >= {params.score_threshold:g}: no human-object pairs"


def detection_rows(images: pa.Table, detections: pa.Table) -> pa.Table:
    """One row per image that has detections: its ``images`` columns plus ``boxes`` (flat), ``labels``,
    ``scores`` lists, for :class:`PairPredictor`.

    Raises:
        ValueError: detections of an image absent from ``images``, or NaN / out-of-range scores (named).
    """
    detections = schemas.conform(detections, schemas.DETECTIONS, "detections")
    known = set(images["image_id"].to_pylist())
    ids = detections["image_id"].to_numpy()
    unknown = sorted(set(np.unique(ids).tolist()) - known)
    if unknown:
        raise ValueError(f"detections: image_id(s) {unknown[:5]} are not among the {len(known)} images of "
                         f"images.parquet (split mismatch between detect and score_regions?)")
    scores = detections["score"].to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(~np.isfinite(scores) | (scores < 0) | (scores > 1))
    if len(bad):
        raise ValueError(f"detections of image {ids[bad[0]]}: score {scores[bad[0]]} (and {len(bad) - 1} more); "
                         "expected finite scores in [0, 1]")
    order = np.argsort(ids, kind="stable")
    ids, starts = np.unique(ids[order], return_index=True)
    ends = np.append(starts[1:], len(order))
    boxes = np.asarray(detections["box"].combine_chunks().flatten(), np.float32).reshape(-1, 4)[order]
    labels = detections["label"].to_numpy()[order]
    scores = scores[order]
    position = {i: k for k, i in enumerate(images["image_id"].to_pylist())}
    rows = images.take(pa.array([position[i] for i in ids.tolist()], pa.int64()))
    return (rows.append_column("boxes", pa.array([boxes[a:b].reshape(-1) for a, b in zip(starts, ends)],
                                                 pa.list_(pa.float32())))
                .append_column("labels", pa.array([labels[a:b] for a, b in zip(starts, ends)], pa.list_(pa.int16())))
                .append_column("scores", pa.array([scores[a:b] for a, b in zip(starts, ends)], pa.list_(pa.float32()))))


def score_rows(rows: pa.Table, checkpoint: str, pair_params: PairParams, score_params: ScoreParams,
               placement: Placement, *, ray: bool, boxes: dict | None = None, detector: DetectorSpec | None = None,
               picture: PictureOptions | None = None, attention: bool | list[int] = False,
               attention_title: str = "{name} (score {score:.3f})", upright: bool = False) -> PoolRun:
    """Runs :class:`PairPredictor` over ``rows`` (image_id, uri, [width, height], [boxes, labels, scores]), the
    classifier at the placement's precision."""
    kwargs = {"checkpoint": checkpoint, "pairs": dataclasses.asdict(pair_params),
              "scoring": dataclasses.asdict(score_params), "boxes": boxes,
              "detector": dataclasses.asdict(detector) if detector else None,
              "picture": dataclasses.asdict(picture) if picture else None, "attention": attention,
              "attention_title": attention_title, "precision": placement.precision}
    return run_predictor(rows, PairPredictor, kwargs, placement, ray=ray, upright=upright, desc="score pairs")


def hoi_table(result: pa.Table) -> pa.Table:
    """The (pair, class) rows of a :class:`PairPredictor` result as HOI_DETECTIONS, sorted by image_id
    then descending score."""
    n = pc.list_value_length(result["hoi"]).to_numpy(zero_copy_only=False).astype(np.int64)
    ids = np.repeat(result["image_id"].to_numpy(), n)
    flat = {k: pc.list_flatten(result[k]) for k in ("hoi", "human_box", "object_box", "score")}
    table = pa.table({
        "image_id": pa.array(ids, pa.int64()), "hoi": flat["hoi"].cast(pa.int16()),
        "human_box": pa.FixedSizeListArray.from_arrays(flat["human_box"].combine_chunks().cast(pa.float32()), 4),
        "object_box": pa.FixedSizeListArray.from_arrays(flat["object_box"].combine_chunks().cast(pa.float32()), 4),
        "score": flat["score"].cast(pa.float32())})
    table = schemas.conform(table, schemas.HOI_DETECTIONS, "hoi_detections")
    return table.take(pc.sort_indices(table, [("image_id", "ascending"), ("score", "descending")]))


def box_counts(result: pa.Table, source: str = "") -> Counts:
    """The box counts and reject rows of a :class:`PairPredictor` (or DetectorPredictor) result."""
    counts = Counts()
    for r in result.select(["image_id", *[n for n, _ in BOX_REPORT]]).to_pylist():
        counts.add(Counts(boxes=r["boxes_in"], clipped=r["clipped"], below_floor=r["below_floor"],
                          over_cap=r["over_cap"],
                          rejects=[(source, item, reason) for item, reason in zip(r["box_reject_items"], r["box_rejects"])]))
    return counts
