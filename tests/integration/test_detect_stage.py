"""The detect stage for real on the demo data: oracle (DEMO ONLY) and an MMDetection detector on Ray."""
from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pyarrow.compute as pc
import pytest
import yaml

from pipeline import storage
from pipeline.schemas import DETECTIONS, REJECTS
from stages import detect

pytestmark = pytest.mark.integration

BASE = {"backend": "oracle", "split": "test", "score_floor": 0.05, "max_per_image": 100,
        "mmdet": {"config": "rtmdet_tiny_8xb32-300e_coco", "random_weights": True, "test_scale": [160, 160],
                  "seed": 3},
        "precomputed": {"format": "hico_json", "label_space": "hico80"},
        "oracle": {"seed": 0, "jitter": 0.05, "drop_rate": 0.1, "false_positives": 1.0}}


POOL = {"batch_size": 4, "actors": 1, "cpus_per_actor": 1, "device": "cpu"}


def _run(prepared, tmp_path, name, images=None, **changes):
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
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({"detect": params, "placement": {"detect": pool}}))
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
    pytest.importorskip("mmdet.apis", reason="MMDetection stack not installed (scripts/install_mmdet.sh)")
    import pyarrow as pa
    import ray

    from pipeline.detection.checkpoints import save_checkpoint
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
        random_run, rejects, meta = _run(prepared_demo, tmp_path, "random", images=tmp_path / "images.parquet",
                                         backend="mmdet", mmdet__actors=2)
        ckpt_run, _, _ = _run(prepared_demo, tmp_path, "ckpt", images=tmp_path / "images.parquet",
                              backend="mmdet", mmdet__checkpoint=str(tmp_path / "tiny.pth"))
    finally:
        ray.shutdown()
    _check_valid(random_run, test)
    assert random_run.num_rows > 0 and meta["mmdet.actors"] == 2 and meta["mmdet.device"] == "cpu"
    assert meta["images_used"] == test.num_rows - 1 and meta["images_rejected"] == 1
    assert "random" in meta["mmdet.weights"]
    assert rejects.num_rows == 1 and rejects["item"][0].as_py() == str(test["image_id"][0].as_py())
    assert "cannot decode image" in rejects["reason"][0].as_py()
    # Saved and reloaded through the stage's loading code (and with 1 actor instead of 2): identical.
    assert ckpt_run.equals(random_run)


def test_bad_parameters_fail_before_any_work(prepared_demo, tmp_path):
    with pytest.raises(FileNotFoundError, match="detect.mmdet.checkpoint: .*nope.pth does not exist"):
        _run(prepared_demo, tmp_path, "x", backend="mmdet", mmdet__checkpoint=str(tmp_path / "nope.pth"))
    if importlib.util.find_spec("mmdet") is not None:
        import torch

        from pipeline.detection.classes import coco80_names

        odd = coco80_names()[:77] + ["traffic cone", "forklift", "pallet"]
        torch.save({"meta": {"dataset_meta": {"classes": odd}}, "state_dict": {}}, tmp_path / "odd.pth")
        with pytest.raises(ValueError, match=r"odd.pth classes: the detector is not COCO-like.*forklift"):
            _run(prepared_demo, tmp_path, "x", backend="mmdet", mmdet__checkpoint=str(tmp_path / "odd.pth"))
        torch.save({"meta": {"dataset_meta": {"classes": coco80_names()}}, "state_dict": {"w": torch.ones(1)}},
                   tmp_path / "other.pth")
        with pytest.raises(ValueError, match=r"other.pth does not fit detect.mmdet.config .*rtmdet_tiny"):
            _run(prepared_demo, tmp_path, "x", backend="mmdet", mmdet__checkpoint=str(tmp_path / "other.pth"))
    with pytest.raises(ValueError, match="detect.backend = 'yolo': expected one of mmdet, precomputed, oracle"):
        _run(prepared_demo, tmp_path, "y", backend="yolo")
    with pytest.raises(ValueError, match="detect.split = 'tset': .*did you mean 'test'"):
        _run(prepared_demo, tmp_path, "z", split="tset")
    assert not (tmp_path / "x.parquet").exists() and not (tmp_path / "x_rejects.parquet").exists()


def test_precomputed_literature_files_through_the_stage(tmp_path):
    """The HICO-DET literature's per-image JSON (tests/assets) imported against an image list."""
    from pathlib import Path

    import pyarrow as pa

    assets = Path(__file__).resolve().parents[1] / "assets" / "hico_json_detections"
    names = [f"HICO_test2015_{i:08d}.jpg" for i in (1, 2, 3, 4)]
    images = pa.table({"image_id": [10, 11, 12, 13], "split": ["test"] * 4, "file_name": names,
                       "uri": [f"/nowhere/{n}" for n in names], "width": [640] * 4, "height": [480] * 4})
    storage.write_parquet(images, tmp_path / "images.parquet")
    params = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    params["backend"] = "precomputed"
    params["precomputed"]["path"] = str(assets)
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"detect": params}))
    meta = detect.main(["--params", str(tmp_path / "p.yaml"), "--images", str(tmp_path / "images.parquet"),
                        "--pairs", str(tmp_path / "unused.parquet"), "--out", str(tmp_path / "d.parquet"),
                        "--rejects", str(tmp_path / "r.parquet")])
    table = storage.read_parquet(tmp_path / "d.parquet")
    _check_valid(table, images)
    assert table["image_id"].to_pylist() == [10, 10, 10, 11]
    assert table["label"].to_pylist() == [0, 3, 1, 0]  # HICO person 49, motorcycle 44, bicycle 9 -> COCO-80
    assert meta["precomputed.clipped"] == 0 and meta["images_rejected"] == 1
    assert storage.read_parquet(tmp_path / "r.parquet")["item"].to_pylist() == [names[3]]
