"""V-COCO for real: the documented experiment (docs/datasets.md) on a tiny V-COCO-format demo through `dvc exp
run`: prepare's adapter, DEFR trained on the 29 action-role classes, the training-free detection written as
the official results list, and the evaluate stage's official role AP, equal to `defr evaluate --benchmark
vcoco` on the same files."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import yaml

from pipeline import storage
from tests.dvc_project import copy_project, dvc, run, shrink_params, use_ray

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# docs/datasets.md "V-COCO" runs the same flags with the demo's default sizes
EXPERIMENT = ["-S", "demo.dataset=vcoco", "-S", "prepare.dataset=vcoco", "-S", "detect.backend=precomputed",
              "-S", "detect.precomputed.format=boxes_json",
              "-S", "detect.precomputed.path=data/demo/raw/oracle_boxes.json",
              "-S", "demo.n_train=36", "-S", "demo.n_test=12"]


def test_vcoco_format_demo_runs_as_a_dvc_experiment_to_official_role_ap(tmp_path, shared_ray):
    repo = tmp_path / "project"
    repo.mkdir()
    copy_project(repo)
    shrink_params(repo / "params.yaml")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["placement"]["ray_address"] = shared_ray.address    # the stages join the session's Ray
    use_ray(shared_ray)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q", "-b", "main"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "project"], repo)
    dvc("exp", "run", *EXPERIMENT, cwd=repo)

    classes = storage.read_parquet(repo / "data/prepared/classes.parquet")
    names = classes.column("name").to_pylist()
    assert len(names) == 29 and names[:3] == ["hold_obj", "stand_agent", "sit_instr"]
    config = json.loads((repo / "models/defr/config.json").read_text())
    assert [c["name"] for c in config["classes"]] == names
    assert len(config["classes"][0]["objects"]) == 80 and config["classes"][1]["objects"] == list(range(80))
    entries = pickle.loads((repo / "data/official_results/vcoco_results.pkl").read_bytes())
    assert entries and set(entries[0]) >= {"image_id", "person_box", "hold_agent", "hold_obj", "stand_agent"}
    assert len(entries[0]["hold_obj"]) == 5
    det = json.loads((repo / "metrics/detection.json").read_text())
    assert det["protocol"].startswith("V-COCO official")
    for key in ("role_ap_scenario_1", "role_ap_scenario_2", "agent_ap"):
        assert 0 < det[key] <= 100, key
    # the stage's numbers are defr evaluate's on the files it wrote (the official formats)
    from pipeline.report.vcoco import evaluate_vcoco

    gt = repo / "data/prepared/vcoco"
    again = evaluate_vcoco(str(repo / "data/official_results/vcoco_results.pkl"), str(gt / "vcoco_test.json"),
                           str(gt / "instances_test.json"))["metrics"]
    assert all(again[k] == det[k] for k in ("role_ap_scenario_1", "role_ap_scenario_2", "agent_ap"))
    report = (repo / "reports/evaluation.md").read_text()
    assert "## V-COCO HOI detection (official role AP)" in report and "DEMO DATA" in report
    rows = (repo / "reports/per_class_ap.csv").read_text().splitlines()
    assert rows[0].endswith("det_ap,det_ap_scenario_2,agent_ap") and len(rows) == 30
    assert np.isfinite(json.loads((repo / "metrics/classification.json").read_text())["map"])
