"""Beyond HICO, for real: a tiny MPII-format dataset through `dvc repro` end to end (single-label, softmax CE,
both MPII conventions, HOI detection reported as not evaluated), and a user's ``table`` dataset with its own
five classes through prepare, embed_text, train, predict and evaluate (classification and HOI detection)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml

from pipeline import schemas, storage
from tests.dvc_project import copy_project, dvc, run, shrink_params, use_ray

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MPII = {
    "demo": {"dataset": "mpii", "n_train": 48, "n_test": 24},
    "prepare": {"dataset": "mpii"},
    "train": {"loss": "softmax_ce"},
    "detect": {"oracle": {"false_positives": 0.0}},
}


def _merge(target: dict, values: dict) -> None:
    for k, v in values.items():
        if isinstance(v, dict):
            _merge(target.setdefault(k, {}), v)
        else:
            target[k] = v


def test_mpii_format_dataset_runs_dvc_repro_end_to_end(tmp_path, shared_ray):
    repo = tmp_path / "project"
    repo.mkdir()
    copy_project(repo)
    shrink_params(repo / "params.yaml")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    _merge(params, MPII)
    # the stages join the session's Ray instead of starting one each (placement: no stage tracks it)
    params["placement"]["ray_address"] = shared_ray.address
    use_ray(shared_ray)
    # The oracle makes no false boxes here: without ground-truth pairs it then has nothing to perturb, so
    # score_regions gets no pair and HOI detection is judged by evaluate alone.
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q", "-b", "main"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "project"], repo)
    dvc("repro", cwd=repo)

    classes = storage.read_parquet(repo / "data/prepared/classes.parquet")
    meta = json.loads(storage.parquet_metadata(repo / "data/prepared/classes.parquet")["defr"])
    assert meta["dataset"] == "mpii" and meta["label_mode"] == "single"
    names = classes.column("name").to_pylist()
    assert all(", " in n for n in names) and classes.column("coco80").null_count == len(names)
    config = json.loads((repo / "models/defr/config.json").read_text())
    assert config["num_classes"] == len(names) and [c["name"] for c in config["classes"]] == names
    prompts = storage.read_parquet(repo / "data/text_embeddings.parquet").column("prompt").to_pylist()
    assert prompts == [f"a photo of a person {n}" for n in names]

    cls = json.loads((repo / "metrics/classification.json").read_text())
    assert cls["map"] == cls["map_all_classes"]
    assert all(0 <= cls[k] <= 100 for k in ("map_all_classes", "map_with_positive", "accuracy"))
    assert cls["num_test_images"] == 24 and cls["num_classes"]["all"] == len(names)
    assert 0 < cls["num_classes"]["with_positive"] <= len(names) and "not published" in cls["note"]
    det = json.loads((repo / "metrics/detection.json").read_text())
    assert set(det) == {"not_evaluated"} and det["not_evaluated"].startswith("HOI detection not evaluated: ")
    report = (repo / "reports/evaluation.md").read_text()
    assert "## MPII activity classification" in report and "55.30" in report
    assert det["not_evaluated"] in report and "HICO-DET" not in report
    per_class = (repo / "reports/per_class_ap.csv").read_text().splitlines()
    assert per_class[0] == "hoi,name,category,n_train_images,cls_ap,cls_ap_all_points"
    assert len(per_class) == len(names) + 1
    assert (repo / "plots/eval/long_tail_detection.csv").read_text().strip() == "hoi,name,n_train_pairs,ap"
    train = json.loads((repo / "metrics/train.json").read_text())
    assert train["epochs"] == 1 and np.isfinite(train["final_train_loss"])


def test_own_table_dataset_trains_and_evaluates(tmp_path):
    """Five classes HICO does not have, multi-label, with boxes: train, predict, evaluate. The HOI detections
    are the test ground truth, jittered, with false positives (this branch's detect/score_regions still
    gate pairs by HICO's vocabulary)."""
    from stages import embed_text, evaluate, generate_demo, predict, prepare, train

    params = {"demo": {"dataset": "table", "n_train": 60, "n_test": 20, "seed": 0},
              "prepare": {"dataset": "table", "root": str(tmp_path / "raw"), "val_fraction": 0.2,
                          "table": {"pairs": "pairs.csv"}},
              "embed_text": {}, "predict": {"split": "test"},
              "train": {"model": "defr-tiny-vit", "image_size": 64, "epochs": 2, "restart_epochs": 1, "lr": 1e-3,
                        "global_batch": 16, "min_per_class": 0, "demo_only": True},
              "evaluate": {"classification": True, "detection": True, "pr_classes": []},
              "placement": {"embed_text": {"cache": ""}, "predict": {"actors": 1, "device": "cpu"},
                            "train": {"num_workers": 1, "max_failures": 0, "storage_path": str(tmp_path / "runs")}}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    p = ["--params", str(path)]
    generate_demo.main(p + ["--out", str(tmp_path / "raw")])
    prepared = tmp_path / "prepared"
    prepare.main(p + ["--out", str(prepared)])
    embed_text.main(p + ["--classes", str(prepared / "classes.parquet"), "--out", str(tmp_path / "text.parquet"),
                         "--plots", str(tmp_path / "plots/embeddings")])
    train.main(p + ["--images", str(prepared / "images.parquet"), "--text-embeddings", str(tmp_path / "text.parquet"),
                    "--model-out", str(tmp_path / "model"), "--history", str(tmp_path / "history.csv"),
                    "--metrics", str(tmp_path / "train.json")])
    config = json.loads((tmp_path / "model/config.json").read_text())
    assert [c["name"] for c in config["classes"]][:2] == ["juggle ball", "dribble ball"]
    assert config["classes"][0]["coco80"] == 32 and config["num_classes"] == 5
    predict.main(p + ["--images", str(prepared / "images.parquet"), "--model", str(tmp_path / "model"),
                      "--out", str(tmp_path / "image_scores.parquet")])
    _write_detections(prepared, tmp_path / "hoi_detections.parquet")
    out = evaluate.main(p + ["--prepared", str(prepared), "--image-scores", str(tmp_path / "image_scores.parquet"),
                             "--hoi-detections", str(tmp_path / "hoi_detections.parquet"),
                             "--metrics", str(tmp_path / "metrics"), "--plots", str(tmp_path / "plots/eval"),
                             "--report", str(tmp_path / "reports/evaluation.md")])
    cls, det = out["classification"], out["detection"]
    assert 0 < cls["map"] <= 100 and cls["num_classes"]["evaluated"] == 5 and cls["known_object_map"] is not None
    assert 0 < det["default"]["full"] < 100 and det["default"]["rare"] is None
    assert det["num_classes"]["full"] == 5 and det["notes"]["rare"] == "the dataset defines no rare split"
    report = (tmp_path / "reports/evaluation.md").read_text()
    assert "## Classification (table)" in report and "65.60" not in report and "## HOI detection" in report
    # one class has no verb (a free-text prompt): the classes are grouped by object only
    assert sorted(p.name for p in (tmp_path / "plots/embeddings").iterdir()) == ["tsne_by_object.png"]


def _write_detections(prepared: Path, out: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    images = storage.read_parquet(prepared / "images.parquet")
    test = images.filter(pc.equal(images.column("split"), "test"))
    pairs = storage.read_parquet(prepared / "pairs.parquet")
    gt = pairs.filter(pc.is_in(pairs.column("image_id"), value_set=test.column("image_id")))
    n = gt.num_rows
    boxes = [np.stack(gt.column(c).to_numpy(zero_copy_only=False)).astype(float) for c in ("human_box", "object_box")]
    pick = rng.integers(0, n, n)
    ids = np.concatenate([gt.column("image_id").to_numpy(), rng.choice(test.column("image_id").to_numpy(), n)])
    hoi = np.concatenate([gt.column("hoi").to_numpy(), rng.integers(0, 5, n)])
    boxes = [np.concatenate([b, b[pick]]) + rng.normal(0, 2, (2 * n, 4)) for b in boxes]
    for b in boxes:
        b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1)
    table = pa.table({"image_id": ids, "hoi": hoi, "human_box": list(boxes[0]), "object_box": list(boxes[1]),
                      "score": rng.random(2 * n)}).cast(schemas.HOI_DETECTIONS)
    storage.write_parquet(table, out, {"demo_only": True})
