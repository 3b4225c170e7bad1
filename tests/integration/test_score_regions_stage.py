"""The score_regions stage for real on the demo data: oracle boxes (DEMO ONLY), a tiny random ViT, local Ray."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml

from pipeline import storage
from pipeline.model import ModelConfig, build_model, save_checkpoint
from pipeline.schemas import DETECTIONS, HOI_DETECTIONS
from pipeline.classes.space import ClassInfo, ClassSpace
from pipeline.classes.hico_vocab import hico_vocabulary
from stages import detect, score_regions

pytestmark = pytest.mark.integration

PARAMS = {"split": "test", "score_threshold": 0.2, "nms_threshold": 0.5, "max_humans": 15, "max_objects": 15,
          "masked_layers": 1, "patch_rule": "any", "min_fraction": 0.5, "score_power": 1.0, "top_k": 20,
          "path": "shared_prefix", "attention_maps": 2}
POOL = {"batch_size": 4, "actors": 1, "cpus_per_actor": 1, "device": "cpu"}
DETECT = {"backend": "oracle", "split": "test", "score_floor": 0.05, "max_per_image": 100,
          "oracle": {"seed": 0, "jitter": 0.05, "drop_rate": 0.1, "false_positives": 1.0}}


@pytest.fixture(scope="module")
def inputs(prepared_demo, tmp_path_factory):
    """Oracle detections with one image's boxes removed and two bad boxes added; a tiny checkpoint."""
    work = tmp_path_factory.mktemp("score_regions")
    (work / "detect.yaml").write_text(yaml.safe_dump({"detect": DETECT}))
    detect.main(["--params", str(work / "detect.yaml"), "--images", str(prepared_demo / "images.parquet"),
                 "--pairs", str(prepared_demo / "pairs.parquet"), "--out", str(work / "oracle.parquet"),
                 "--rejects", str(work / "rejects.parquet")])
    dets = storage.read_parquet(work / "oracle.parquet")
    ids = sorted(set(dets["image_id"].to_pylist()))
    emptied, damaged = ids[0], ids[1]
    dets = dets.filter(pc.not_equal(dets["image_id"], emptied))
    bad = pa.table({"image_id": [damaged, damaged], "box": [[50, 50, -10, 60], [5000, 10, 6000, 20]],
                    "label": [3, 3], "score": [0.9, 0.9]}, schema=DETECTIONS)
    storage.write_parquet(pa.concat_tables([dets.cast(DETECTIONS), bad]), work / "detections.parquet")
    hico = ClassSpace.hico()
    torch_model = build_model(ModelConfig(model_name="defr-tiny-vit", init="random", num_classes=len(hico),
                                          classes=hico.to_list(), metadata={"demo_only": True}), None)
    save_checkpoint(torch_model, work / "model")
    return work, prepared_demo / "images.parquet", emptied, damaged


def run(work, images, name, detections=None, model=None, **changes):
    pool = {**POOL, **{k: v for k, v in changes.items() if k in POOL}}
    result = {**PARAMS, **{k: v for k, v in changes.items() if k not in POOL}}
    (work / f"{name}.yaml").write_text(yaml.safe_dump({"score_regions": result,
                                                       "placement": {"score_regions": pool}}))
    out, plots = work / f"{name}.parquet", work / f"{name}_plots"
    meta = score_regions.main(["--params", str(work / f"{name}.yaml"), "--model", str(model or work / "model"),
                               "--detections", str(detections or work / "detections.parquet"),
                               "--images", str(images), "--out", str(out), "--plots", str(plots),
                               "--rejects", str(work / f"{name}_rejects.parquet")])
    return out, plots, meta


@pytest.mark.smoke  # make test-fast: score_regions
def test_stage_writes_hoi_detections_and_attention_maps(inputs, monkeypatch):
    work, images_path, emptied, damaged = inputs

    def not_in_the_driver(*args, **kwargs):
        raise AssertionError("the driver loaded the checkpoint or decoded an image: the actors do that")

    # The actors (Ray worker processes) load the model and decode; the driver reads config.json only.
    monkeypatch.setattr("pipeline.model.load_checkpoint", not_in_the_driver)
    monkeypatch.setattr("pipeline.datasets.images.read_rgb", not_in_the_driver)
    out, plots, meta = run(work, images_path, "shared")
    table = storage.read_parquet(out)
    assert table.schema.equals(HOI_DETECTIONS, check_metadata=False)
    assert table.num_rows > 0 and emptied not in set(table["image_id"].to_pylist())
    assert max(np.unique(table["image_id"].to_numpy(), return_counts=True)[1]) <= PARAMS["top_k"]
    assert meta["boxes"]["degenerate box (x2 <= x1 or y2 <= y1)"] == 1
    assert meta["boxes"]["box outside the image"] == 1
    # The two dropped boxes are reject rows naming the image and the box.
    rejects = storage.read_parquet(work / "shared_rejects.parquet")
    assert sorted(rejects["reason"].to_pylist()) == ["box outside the image", "degenerate box (x2 <= x1 or y2 <= y1)"]
    names = dict(zip(*(storage.read_parquet(images_path)[c].to_pylist() for c in ("image_id", "file_name"))))
    assert all(item.startswith(f"{names[damaged]} box [") for item in rejects["item"].to_pylist())
    assert meta["demo_only"] is True and "DEMO ONLY" in storage.parquet_metadata(out)["note"]
    # Each detection's HOI is about the object box's category, in original pixels of its image.
    images = storage.read_parquet(images_path)
    size = dict(zip(images["image_id"].to_pylist(), zip(images["width"].to_pylist(), images["height"].to_pylist())))
    # Every row's object box is one of its image's detections (clipped to the image, as the stage clips it),
    # and the row's HOI involves that detection's object category: object gating, checked on every row.
    dets = storage.read_parquet(work / "detections.parquet")
    vocab = hico_vocabulary()
    labels_of: dict = {}
    for i, b, l in zip(dets["image_id"].to_pylist(), dets["box"].to_pylist(), dets["label"].to_pylist()):
        w, h = size[i]
        box = np.clip(np.asarray(b, np.float64), 0, [w, h, w, h])
        labels_of.setdefault((i, tuple(np.round(box, 3))), set()).add(vocab.coco80_names[l])
    rows = table.to_pylist()
    for r in rows:
        w, h = size[r["image_id"]]
        assert 0 <= r["object_box"][0] < r["object_box"][2] <= w and 0 <= r["human_box"][1] < r["human_box"][3] <= h
        objects = labels_of.get((r["image_id"], tuple(np.round(np.asarray(r["object_box"], np.float64), 3))))
        assert objects is not None, f"object box {r['object_box']} of image {r['image_id']} is no detection of it"
        assert vocab[r["hoi"]].object in objects, (r, objects)
    assert len(rows) == table.num_rows > 0
    pngs = sorted(plots.glob("*.png"))
    assert len(pngs) == 2 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    # The reference path (a full forward per pair) gives the same detections.
    naive, _, _ = run(work, images_path, "naive", path="naive", attention_maps=0)
    naive = storage.read_parquet(naive)
    assert naive["hoi"].to_pylist() == table["hoi"].to_pylist()
    np.testing.assert_allclose(naive["score"].to_numpy(), table["score"].to_numpy(), rtol=1e-4, atol=1e-7)


def test_nan_score_fails_without_writing(inputs):
    work, images_path, *_ = inputs
    dets = storage.read_parquet(work / "detections.parquet")
    scores = dets["score"].to_numpy().copy()
    scores[3] = np.nan
    dets = dets.set_column(dets.schema.get_field_index("score"), "score", pa.array(scores, pa.float32()))
    storage.write_parquet(dets, work / "nan_detections.parquet")
    with pytest.raises(ValueError, match=r"image \d+: score nan"):
        run(work, images_path, "nan", detections=work / "nan_detections.parquet")
    assert not (work / "nan.parquet").exists() and not (work / "nan_plots").exists()


def test_a_model_without_object_classes_is_not_applicable(inputs):
    """An MPII-like label space (activities, no object): an empty table that says why, no Ray started."""
    work, images_path, *_ = inputs
    space = ClassSpace([ClassInfo("bicycling"), ClassInfo("dancing"), ClassInfo("fishing")])
    model = build_model(ModelConfig(model_name="defr-tiny-vit", init="random", num_classes=3,
                                    classes=space.to_list()), None)
    save_checkpoint(model, work / "mpii_model")
    out, plots, meta = run(work, images_path, "mpii", model=work / "mpii_model")
    assert storage.read_parquet(out).num_rows == 0
    assert "involve no COCO object" in storage.parquet_metadata(out)["not_applicable"]
    assert meta["rows"] == 0 and list(plots.iterdir()) == []


def test_images_that_cannot_be_read_are_rejects_and_too_many_fail(inputs, tmp_path):
    from pipeline.rejects import DataLossError

    work, images_path, *_ = inputs
    images = storage.read_parquet(images_path)
    test_ids = set(storage.read_parquet(work / "detections.parquet")["image_id"].to_pylist())
    broken = sorted(test_ids)[:1]
    uris = [str(tmp_path / "gone.jpg") if i in broken else u
            for i, u in zip(images["image_id"].to_pylist(), images["uri"].to_pylist())]
    storage.write_parquet(images.set_column(images.schema.get_field_index("uri"), "uri", pa.array(uris)),
                          tmp_path / "images.parquet")
    out, plots, meta = run(work, tmp_path / "images.parquet", "one_gone")
    rejects = storage.read_parquet(work / "one_gone_rejects.parquet")
    assert meta["images_rejected"] == 1 and rejects["item"][0].as_py() == str(broken[0])
    assert rejects["reason"][0].as_py() == "missing image file"
    # The actors were asked for the figure of the unreadable image: the next image's comes from a second run.
    with_rows = sorted(set(storage.read_parquet(out)["image_id"].to_pylist()))[:PARAMS["attention_maps"]]
    assert broken[0] not in with_rows and meta["attention_maps"] == len(with_rows) == 2
    assert sorted(p.name for p in plots.iterdir()) == sorted(f"image_{i}.png" for i in with_rows)
    many = sorted(test_ids)[:10]  # 10 of ~39 images: over 5 %
    uris = [str(tmp_path / "gone.jpg") if i in many else u
            for i, u in zip(images["image_id"].to_pylist(), images["uri"].to_pylist())]
    storage.write_parquet(images.set_column(images.schema.get_field_index("uri"), "uri", pa.array(uris)),
                          tmp_path / "images10.parquet")
    with pytest.raises(DataLossError, match=r"test images with detections: 10 of \d+ rejected .*missing image file \(10\)"):
        run(work, tmp_path / "images10.parquet", "ten_gone", attention_maps=0)
    assert not (work / "ten_gone.parquet").exists() and not (work / "ten_gone_rejects.parquet").exists()
