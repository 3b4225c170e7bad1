"""The detect stage for real on the demo data: oracle (DEMO ONLY) and an MMDetection detector on Ray."""
from __future__ import annotations

import shutil

import numpy as np
import pyarrow.compute as pc
import pytest
import yaml

from pipeline import storage
from pipeline.schemas import DETECTIONS, REJECTS
from stages import detect
from tests.conftest import require_module

pytestmark = pytest.mark.integration

BASE = {"backend": "oracle", "split": "test", "score_floor": 0.05, "max_per_image": 100,
        "mmdet": {"config": "rtmdet_tiny_8xb32-300e_coco", "random_weights": True, "test_scale": [160, 160],
                  "seed": 3},
        "precomputed": {"format": "hico_json", "label_space": "hico80"},
        "oracle": {"seed": 0, "jitter": 0.05, "drop_rate": 0.1, "false_positives": 1.0}}


POOL = {"batch_size": 4, "actors": 1, "cpus_per_actor": 1, "device": "cpu"}


def _run(prepared, tmp_path, name, images=None, checks=None, **changes):
    params = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    pool = dict(POOL)
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if section == "mmdet" and field in POOL:
            pool[field] = value
        elif field:
            params[section][field] = value
            if field == "checkpoint":
                params[section]["random_weights"] = False
        else:
            params[section] = value
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({"detect": params, "placement": {"detect": pool},
                                                           **({"checks": checks} if checks else {})}))
    out, rejects = tmp_path / f"{name}.parquet", tmp_path / f"{name}_rejects.parquet"
    meta = detect.main(["--params", str(tmp_path / f"{name}.yaml"),
                        "--images", str(images or prepared / "images.parquet"),
                        "--pairs", str(prepared / "pairs.parquet"), "--out", str(out), "--rejects", str(rejects)])
    return storage.read_parquet(out), storage.read_parquet(rejects), meta


def _check_valid(table, images):
    assert table.schema.equals(DETECTIONS, check_metadata=False)
    size = {i: (w, h) for i, w, h in zip(*(images[c].to_pylist() for c in ("image_id", "width", "height")))}
    boxes = np.asarray(table["box"].to_pylist(), dtype=np.float64)
    wh = np.asarray([size[i] for i in table["image_id"].to_pylist()], dtype=np.float64)
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= wh[:, 0]).all() and (boxes[:, 3] <= wh[:, 1]).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    labels, scores = table["label"].to_numpy(), table["score"].to_numpy()
    assert labels.min() >= 0 and labels.max() < 80
    assert scores.min() >= 0.05 and scores.max() <= 1


@pytest.mark.smoke  # make test-fast: generate_demo, prepare (the prepared_demo fixture) and detect
def test_oracle_is_labelled_demo_only_and_deterministic(prepared_demo, tmp_path):
    images = storage.read_parquet(prepared_demo / "images.parquet")
    test = images.filter(pc.equal(images["split"], "test"))
    a, rejects, meta = _run(prepared_demo, tmp_path, "a")
    b, _, _ = _run(prepared_demo, tmp_path, "b")
    assert a.equals(b) and a.num_rows > test.num_rows
    _check_valid(a, test)
    assert (a["label"].to_numpy() == 0).any()  # persons
    assert set(a["image_id"].to_pylist()) <= set(test["image_id"].to_pylist())
    written = storage.parquet_metadata(tmp_path / "a.parquet")
    assert written["backend"] == "oracle" and written["oracle"] == "demo only"
    assert "not a detector" in written["oracle.oracle"]
    assert rejects.num_rows == 0 and rejects.schema.equals(REJECTS, check_metadata=False)
    c, _, _ = _run(prepared_demo, tmp_path, "c", oracle__seed=1)
    assert not c.equals(a)


def test_mmdet_detector_on_ray_writes_valid_detections_and_rejects_bad_images(prepared_demo, tmp_path):
    require_module("mmdet.apis", "MMDetection stack not installed: `make install-detect` (scripts/install_mmdet.sh)")
    import pyarrow as pa
    import ray

    from pipeline.detection.detector_checkpoints import save_checkpoint
    from pipeline.detection.mmdet_backend import MMDetDetector

    images = storage.read_parquet(prepared_demo / "images.parquet")
    test = images.filter(pc.equal(images["split"], "test"))
    # One undecodable JPEG among the test images: listed in the rejects report, the stage goes on.
    broken = tmp_path / "broken.jpg"
    shutil.copy(test["uri"][0].as_py(), broken)
    broken.write_bytes(broken.read_bytes()[:200])
    uris = [str(broken) if i == test["image_id"][0].as_py() else u
            for i, u in zip(images["image_id"].to_pylist(), images["uri"].to_pylist())]
    images = images.set_column(images.schema.get_field_index("uri"), "uri", pa.array(uris))
    storage.write_parquet(images, tmp_path / "images.parquet")

    try:
        # The random model of seed 3, as the stage builds it, saved as a checkpoint (mmengine layout).
        model = MMDetDetector(BASE["mmdet"]["config"], "random", seed=3)
        save_checkpoint(model.model, model.classes, str(tmp_path / "tiny.pth"))
        # Random weights put about 7 % of their boxes entirely in the padding outside the image: rejects,
        # over the default 5 % threshold (a trained detector does not do that).
        loose = {"max_reject_fraction": 0.2}
        random_run, rejects, meta = _run(prepared_demo, tmp_path, "random", images=tmp_path / "images.parquet",
                                         checks=loose, backend="mmdet", mmdet__actors=2)
        ckpt_run, _, _ = _run(prepared_demo, tmp_path, "ckpt", images=tmp_path / "images.parquet", checks=loose,
                              backend="mmdet", mmdet__checkpoint=str(tmp_path / "tiny.pth"))
    finally:
        ray.shutdown()
    _check_valid(random_run, test)
    assert random_run.num_rows > 0 and meta["mmdet.actors"] == 2 and meta["mmdet.device"] == "cpu"
    assert meta["images_used"] == test.num_rows - 1 and meta["images_rejected"] == 1
    assert "random" in meta["mmdet.weights"]
    # The undecodable image first, then one row per dropped box (naming its image and coordinates).
    assert rejects["item"][0].as_py() == str(test["image_id"][0].as_py())
    assert "cannot decode image" in rejects["reason"][0].as_py()
    assert rejects.num_rows - 1 == meta["mmdet.boxes_rejected"] > 0
    assert set(rejects["reason"].to_pylist()[1:]) == {"box outside the image"}
    assert all(" box [" in item for item in rejects["item"].to_pylist()[1:])
    # Saved and reloaded through the stage's loading code (and with 1 actor instead of 2): identical.
    assert ckpt_run.equals(random_run)


def test_bad_parameters_fail_before_any_work(prepared_demo, tmp_path):
    with pytest.raises(ValueError, match="detect.backend = 'yolo': expected one of mmdet, precomputed, oracle"):
        _run(prepared_demo, tmp_path, "y", backend="yolo")
    with pytest.raises(ValueError, match="detect.split = 'tset': .*did you mean 'test'"):
        _run(prepared_demo, tmp_path, "z", split="tset")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["y.yaml", "z.yaml"]  # their params files, nothing else


def test_checkpoints_of_another_label_space_or_model_fail_before_any_work(prepared_demo, tmp_path):
    require_module("mmdet.apis", "MMDetection stack not installed: `make install-detect` (scripts/install_mmdet.sh)")
    import torch

    from pipeline.classes.coco import coco80_names

    # (without the stack, the backend fails first on the missing import, naming `make install-detect`)
    with pytest.raises(FileNotFoundError, match="detect.mmdet.checkpoint: .*nope.pth does not exist"):
        _run(prepared_demo, tmp_path, "x", backend="mmdet", mmdet__checkpoint=str(tmp_path / "nope.pth"))

    odd = coco80_names()[:77] + ["traffic cone", "forklift", "pallet"]
    torch.save({"meta": {"dataset_meta": {"classes": odd}}, "state_dict": {}}, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match=r"odd.pth classes: the detector is not COCO-like.*forklift"):
        _run(prepared_demo, tmp_path, "x", backend="mmdet", mmdet__checkpoint=str(tmp_path / "odd.pth"))
    torch.save({"meta": {"dataset_meta": {"classes": coco80_names()}}, "state_dict": {"w": torch.ones(1)}},
               tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"other.pth does not fit detect.mmdet.config .*rtmdet_tiny"):
        _run(prepared_demo, tmp_path, "x", backend="mmdet", mmdet__checkpoint=str(tmp_path / "other.pth"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.pth", "other.pth", "x.yaml"]  # no output, no temporary


def _precomputed(tmp_path, name, images, path, fmt="hico_json", label_space="hico80", checks=None):
    storage.write_parquet(images, tmp_path / f"{name}_images.parquet")
    params = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    params["backend"] = "precomputed"
    params["precomputed"] = {"format": fmt, "path": str(path), "label_space": label_space}
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({"detect": params, **({"checks": checks} if checks else {})}))
    return detect.main(["--params", str(tmp_path / f"{name}.yaml"), "--images", str(tmp_path / f"{name}_images.parquet"),
                        "--pairs", str(tmp_path / "unused.parquet"), "--out", str(tmp_path / f"{name}.parquet"),
                        "--rejects", str(tmp_path / f"{name}_rejects.parquet")])


def _image_list(names, width=640, height=480):
    import pyarrow as pa

    return pa.table({"image_id": list(range(10, 10 + len(names))), "split": ["test"] * len(names),
                     "file_name": names, "uri": [f"/nowhere/{n}" for n in names], "width": [width] * len(names),
                     "height": [height] * len(names)})


def test_precomputed_literature_files_through_the_stage(tmp_path):
    """The HICO-DET literature's per-image JSON (tests/assets) imported against an image list."""
    from pathlib import Path

    from pipeline.rejects import DataLossError

    assets = Path(__file__).resolve().parents[1] / "assets" / "hico_json_detections"
    names = [f"HICO_test2015_{i:08d}.jpg" for i in (1, 2, 3, 4)]
    images = _image_list(names)
    # One image of four has no detection file: 25 % of the input lost, over the default 5 %: the stage
    # fails, naming the count and the reason, and writes nothing.
    with pytest.raises(DataLossError, match=r"1 of 4 rejected \(25.0 %\).*no detection file for this image \(1\)"):
        _precomputed(tmp_path, "strict", images, assets)
    assert not (tmp_path / "strict.parquet").exists() and not (tmp_path / "strict_rejects.parquet").exists()
    meta = _precomputed(tmp_path, "d", images, assets, checks={"max_reject_fraction": 0.5})
    table = storage.read_parquet(tmp_path / "d.parquet")
    _check_valid(table, images)
    assert table["image_id"].to_pylist() == [10, 10, 10, 11]
    assert table["label"].to_pylist() == [0, 3, 1, 0]  # HICO person 49, motorcycle 44, bicycle 9 -> COCO-80
    assert meta["precomputed.clipped"] == 0 and meta["images_rejected"] == 1
    assert storage.read_parquet(tmp_path / "d_rejects.parquet")["item"].to_pylist() == [names[3]]


def test_boxes_written_as_xywh_fail_the_stage_with_the_count_and_reason(tmp_path):
    import pyarrow as pa

    rng = np.random.default_rng(0)
    names = [f"img_{i}.jpg" for i in range(40)]
    n = 100
    xy = rng.uniform(150, 400, (n, 2))
    wh = rng.uniform(20, 200, (n, 2))
    file_names = [names[i % 40] for i in range(n)]
    def table(boxes):
        return pa.table({"file_name": file_names, "x1": boxes[:, 0], "y1": boxes[:, 1], "x2": boxes[:, 2],
                         "y2": boxes[:, 3], "label": [0] * n, "score": [0.9] * n})
    xywh = np.concatenate([xy, wh], axis=1)
    lost = int(((wh < xy).any(axis=1)).sum())     # inverted when read as x1, y1, x2, y2
    import pyarrow.parquet as pq
    pq.write_table(table(xywh), tmp_path / "xywh.parquet")
    with pytest.raises(ValueError, match=rf"boxes from the precomputed backend: {lost} of {n} rejected .*likely x, y, w, h box"):
        _precomputed(tmp_path, "xywh", _image_list(names), tmp_path / "xywh.parquet", "table", "coco80")
    # The same boxes as x1, y1, x2, y2: every box kept.
    pq.write_table(table(np.concatenate([xy, xy + wh], axis=1)), tmp_path / "xyxy.parquet")
    meta = _precomputed(tmp_path, "xyxy", _image_list(names), tmp_path / "xyxy.parquet", "table", "coco80")
    assert meta["precomputed.boxes_rejected"] == 0 and meta["detections"] == n


def test_many_missing_detection_files_fail_and_few_are_listed(tmp_path, caplog):
    import json
    import logging

    names = [f"x_{i:03d}.jpg" for i in range(40)]
    (tmp_path / "dets").mkdir()
    for name in names[:1]:
        (tmp_path / "dets" / name.replace(".jpg", ".json")).write_text(json.dumps(
            {"boxes": [[1, 1, 50, 50]], "labels": [49], "scores": [0.9]}))
    with pytest.raises(ValueError, match=r"39 of 40 rejected .*no detection file for this image \(39\)"):
        _precomputed(tmp_path, "few", _image_list(names), tmp_path / "dets")
    for name in names[1:39]:
        (tmp_path / "dets" / name.replace(".jpg", ".json")).write_text(json.dumps(
            {"boxes": [[1, 1, 50, 50]], "labels": [49], "scores": [0.9]}))
    with caplog.at_level(logging.WARNING):
        meta = _precomputed(tmp_path, "most", _image_list(names), tmp_path / "dets")
    assert meta["images_rejected"] == 1
    assert any("1 of 40 rejected (2.5 %)" in r.message and "most_rejects.parquet" in r.message for r in caplog.records)


def test_the_boxes_json_of_real_photos_through_the_stage(tmp_path, shared_photos):
    """shared/data/photos/boxes.json (hand-drawn boxes, COCO names) as a precomputed source."""
    from PIL import Image

    names = ["person.jpg", "dog.jpg", "horses.jpg"]
    sizes = [Image.open(shared_photos / n).size for n in names]
    import pyarrow as pa

    images = pa.table({"image_id": [1, 2, 3], "split": ["test"] * 3, "file_name": names,
                       "uri": [str(shared_photos / n) for n in names], "width": [w for w, _ in sizes],
                       "height": [h for _, h in sizes]})
    meta = _precomputed(tmp_path, "photos", images, shared_photos / "boxes.json", "boxes_json")
    table = storage.read_parquet(tmp_path / "photos.parquet")
    _check_valid(table, images)
    assert meta["images_rejected"] == 0 and meta["precomputed.boxes_rejected"] == 0
    # person.jpg: person, dog, horse (COCO-80 0, 16, 17), sorted by score; horses.jpg: five horses.
    first = table.filter(pc.equal(table["image_id"], 1))
    assert first["label"].to_pylist() == [0, 17, 16]
    assert table.filter(pc.equal(table["image_id"], 3))["label"].to_pylist() == [17] * 5


def test_oracle_without_ground_truth_pairs_is_not_applicable_and_score_regions_says_so(prepared_demo, tmp_path):
    """An image-level dataset (no HICO-DET boxes): the oracle has nothing to perturb. Both stages write an
    empty table whose metadata says why, instead of failing or inventing boxes."""
    from pipeline.model import ModelConfig, build_model, save_checkpoint
    from stages import score_regions

    pairs = storage.read_parquet(prepared_demo / "pairs.parquet")
    storage.write_parquet(pairs.slice(0, 0), tmp_path / "no_pairs.parquet")
    (tmp_path / "d.yaml").write_text(yaml.safe_dump({"detect": BASE}))
    meta = detect.main(["--params", str(tmp_path / "d.yaml"), "--images", str(prepared_demo / "images.parquet"),
                        "--pairs", str(tmp_path / "no_pairs.parquet"), "--out", str(tmp_path / "d.parquet"),
                        "--rejects", str(tmp_path / "r.parquet")])
    assert storage.read_parquet(tmp_path / "d.parquet").num_rows == 0
    reason = storage.parquet_metadata(tmp_path / "d.parquet")["not_applicable"]
    assert "no ground-truth human-object pairs" in reason and meta["not_applicable"] == reason
    save_checkpoint(build_model(ModelConfig(model_name="defr-tiny-vit", init="random"), None), tmp_path / "model")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"score_regions": {"split": "test"}}))
    score_regions.main(["--params", str(tmp_path / "s.yaml"), "--model", str(tmp_path / "model"), "--detections",
                        str(tmp_path / "d.parquet"), "--images", str(prepared_demo / "images.parquet"),
                        "--out", str(tmp_path / "h.parquet"), "--plots", str(tmp_path / "plots")])
    assert storage.read_parquet(tmp_path / "h.parquet").num_rows == 0
    assert storage.parquet_metadata(tmp_path / "h.parquet")["not_applicable"] == f"no detections: {reason}"
