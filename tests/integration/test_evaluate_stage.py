"""The evaluate stage for real on the prepared demo: perfect inputs score 100, noisy ones less, and
`dvc metrics diff` / `dvc plots diff` between two committed runs show the change."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml

from pipeline import schemas, storage
from pipeline.datasets.labels import label_matrix
from stages import evaluate

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def write_inputs(prepared: Path, data: Path, noise: float, seed: int = 0) -> None:
    """image_scores and hoi_detections for the test split: the truth itself (noise 0) or a noisy copy
    (scores with Gaussian noise; boxes jittered; 2 random false positives per pair). DEMO ONLY."""
    rng = np.random.default_rng(seed)
    images = storage.read_parquet(prepared / "images.parquet")
    test = images.filter(pc.equal(images.column("split"), "test"))
    labels = label_matrix(test, storage.read_parquet(prepared / "classes.parquet").num_rows)
    scores = (labels == 1) + noise * rng.normal(size=labels.shape)
    storage.write_parquet(pa.table({"image_id": test.column("image_id"), "scores": list(scores.astype(np.float32))},
                                   schema=schemas.IMAGE_SCORES), data / "image_scores.parquet", {"demo_only": True})
    pairs = storage.read_parquet(prepared / "pairs.parquet")
    gt = pairs.filter(pc.is_in(pairs.column("image_id"), value_set=test.column("image_id")))
    ids, hoi = gt.column("image_id").to_numpy(), gt.column("hoi").to_numpy()
    boxes = [np.stack(gt.column(c).to_numpy(zero_copy_only=False)) for c in ("human_box", "object_box")]
    score = rng.random(len(ids)) + 1.0
    if noise:
        n, fp = len(ids), 2 * len(ids)
        pick = rng.integers(0, n, fp)
        ids = np.concatenate([ids, rng.choice(test.column("image_id").to_numpy(), fp)])
        hoi = np.concatenate([hoi, hoi[pick]])
        boxes = [np.concatenate([b, b[pick]]) + noise * 8 * rng.normal(size=(n + fp, 4)) for b in boxes]
        for b in boxes:
            b[:, 2:] = np.maximum(b[:, 2:], b[:, :2])
        score = np.concatenate([score, rng.random(fp) * 1.5])
    table = pa.table({"image_id": ids, "hoi": hoi, "human_box": list(boxes[0]), "object_box": list(boxes[1]),
                      "score": score}).cast(schemas.HOI_DETECTIONS)
    storage.write_parquet(table, data / "hoi_detections.parquet", {"demo_only": True})


def run(repo: Path, prepared: Path) -> dict:
    return evaluate.main(["--params", str(repo / "params.yaml"), "--prepared", str(prepared),
                          "--image-scores", str(repo / "data/image_scores.parquet"),
                          "--hoi-detections", str(repo / "data/hoi_detections.parquet"),
                          "--metrics", str(repo / "metrics"), "--plots", str(repo / "plots/eval"),
                          "--report", str(repo / "reports/evaluation.md")])


def sh(repo: Path, *cmd: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "DVC_NO_ANALYTICS": "1"}
    return subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


@pytest.mark.smoke  # make test-fast: evaluate
def test_evaluate_stage_end_to_end_and_dvc_diff(prepared_demo, tmp_path):
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["evaluate"]
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"evaluate": stage}}))
    (repo / "params.yaml").write_text(yaml.safe_dump(
        {"evaluate": yaml.safe_load((ROOT / "params.yaml").read_text())["evaluate"]}))
    dvc = str(Path(sys.executable).with_name("dvc"))
    sh(repo, "git", "init", "-q")
    sh(repo, dvc, "init", "-q")

    write_inputs(prepared_demo, repo / "data", noise=0.0)
    perfect = run(repo, prepared_demo)
    assert perfect["classification"]["map"] == 100.0 and perfect["classification"]["known_object_map"] == 100.0
    assert perfect["detection"]["default"] == {"full": 100.0, "rare": 100.0, "non_rare": 100.0}
    assert perfect["demo"] is True
    n = perfect["classification"]["num_classes"]["evaluated"]
    assert 0 < n < 600                                  # the demo uses a subset of the classes
    report = (repo / "reports/evaluation.md").read_text()
    assert "DEMO DATA" in report and "65.60" in report and "32.35" in report
    assert len((repo / "reports/per_class_ap.csv").read_text().splitlines()) == 601
    long_tail = (repo / "plots/eval/long_tail_classification.csv").read_text().splitlines()
    assert long_tail[0] == "hoi,name,n_train_images,ap" and len(long_tail) == n + 1
    assert len(list((repo / "plots/eval/pr").glob("*.csv"))) == 6
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "perfect")

    write_inputs(prepared_demo, repo / "data", noise=0.7)
    noisy = run(repo, prepared_demo)
    assert 0 < noisy["classification"]["map"] < 100 and 0 < noisy["detection"]["default"]["full"] < 100
    assert noisy["detection"]["known_object"]["full"] >= noisy["detection"]["default"]["full"]
    diff = json.loads(sh(repo, dvc, "metrics", "diff", "--json"))
    changed = diff["metrics/classification.json"]["map"]
    assert changed["old"] == 100.0 and changed["new"] == noisy["classification"]["map"]
    assert diff["metrics/detection.json"]["default.full"]["new"] == noisy["detection"]["default"]["full"]
    plots = sh(repo, dvc, "plots", "diff", "--json")
    assert "plots/eval/long_tail_detection.csv" in plots and "plots/eval/pr" in plots


def test_missing_detection_table_is_a_clear_error(prepared_demo, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        {"evaluate": {"classification": True, "detection": True, "pr_classes": []}}))
    write_inputs(prepared_demo, tmp_path / "data", noise=0.0)
    (tmp_path / "data/hoi_detections.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="hoi_detections .*evaluate.detection is true"):
        run(tmp_path, prepared_demo)
    assert not (tmp_path / "metrics").exists()          # nothing half-written
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        {"evaluate": {"classification": True, "detection": False, "pr_classes": [9999]}}))
    with pytest.raises(ValueError, match="evaluate.pr_classes"):
        run(tmp_path, prepared_demo)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        {"evaluate": {"classification": True, "detection": False, "pr_classes": []}}))
    out = run(tmp_path, prepared_demo)
    assert out["detection"] is None
    assert json.loads((tmp_path / "metrics/detection.json").read_text())["skipped"]
    shutil.rmtree(tmp_path / "metrics")


def test_empty_but_valid_results_and_detection_that_does_not_apply(prepared_demo, tmp_path):
    """Zero HOI detections and all-equal scores are results (AP 0, the AP of a tied ranking), written with
    notes and plots that say so; a detection table marked not applicable gives no mAP at all."""
    (tmp_path / "data").mkdir()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        {"evaluate": {"classification": True, "detection": True, "pr_classes": []}}))
    write_inputs(prepared_demo, tmp_path / "data", noise=0.0)
    scores = storage.read_parquet(tmp_path / "data/image_scores.parquet")
    zeros = pa.table({"image_id": scores.column("image_id"),
                      "scores": [np.zeros(600, np.float32)] * scores.num_rows}, schema=schemas.IMAGE_SCORES)
    storage.write_parquet(zeros, tmp_path / "data/image_scores.parquet", {"demo_only": True})
    storage.write_parquet(schemas.HOI_DETECTIONS.empty_table(), tmp_path / "data/hoi_detections.parquet",
                          {"demo_only": True})
    out = run(tmp_path, prepared_demo)
    cls, det = out["classification"], out["detection"]
    assert 0 < cls["map"] < 100 and cls["num_classes"]["evaluated"] > 0     # ties: every image at one rank
    assert det["default"] == {"full": 0.0, "rare": 0.0, "non_rare": 0.0} and det["num_detections"] == 0
    assert det["notes"]["detections"] == "no HOI detections: every class with test pairs has AP 0"
    report = (tmp_path / "reports/evaluation.md").read_text()
    assert "Note (detections): no HOI detections" in report
    assert (tmp_path / "plots/eval/long_tail_detection.csv").read_text().count("\n") == det["num_classes"]["full"] + 1
    pr = sorted((tmp_path / "plots/eval/pr").glob("detection_*.csv"))
    assert pr and all(p.read_text() == "recall,precision\n" for p in pr)   # nothing ranked: header only
    assert (tmp_path / "plots/eval/pr_detection.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    storage.write_parquet(schemas.HOI_DETECTIONS.empty_table(), tmp_path / "data/hoi_detections.parquet",
                          {"not_applicable": "the oracle found no ground-truth pairs"})
    out = run(tmp_path, prepared_demo)
    assert out["detection"] == {"not_evaluated": "HOI detection not evaluated: the oracle found no ground-truth pairs"}
    assert json.loads((tmp_path / "metrics/detection.json").read_text()) == out["detection"]
    assert "HOI detection not evaluated: the oracle found no ground-truth pairs." in \
        (tmp_path / "reports/evaluation.md").read_text()
    assert (tmp_path / "plots/eval/long_tail_detection.csv").read_text() == "hoi,name,n_train_pairs,ap\n"
