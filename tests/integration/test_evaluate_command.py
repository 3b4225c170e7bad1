"""``defr evaluate`` as a user runs it: the installed command in a subprocess, on a UPT-style
``detections_NN.mat`` cache and on a QPIC-style result list of the same detections."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.results import read_test_set
from tests.result_writers import write_detr_list, write_mat_cache
from tests.conftest import ROOT
from tests.unit.test_results_formats import small_anno, small_detections

pytestmark = pytest.mark.integration


def defr(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("defr", path=str(Path(sys.executable).parent))
    command = [exe] if exe else [sys.executable, "-m", "pipeline.cli"]
    return subprocess.run(command + list(args), cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_defr_evaluate_gives_the_same_numbers_for_a_mat_cache_and_a_result_list(tmp_path):
    anno = small_anno(tmp_path)
    test = read_test_set(anno)
    det = small_detections(test)
    write_mat_cache(det, test.num_images, tmp_path / "upt_cache")
    write_detr_list(det, test.file_names, tmp_path / "qpic.json")
    metrics = {}
    for name, results in (("mat", tmp_path / "upt_cache"), ("detr", tmp_path / "qpic.json")):
        start = time.perf_counter()
        run = defr("evaluate", str(results), "--benchmark", "hicodet", "--anno", anno, "--out", str(tmp_path / name),
                   "--compare", "cdn-l")
        assert run.returncode == 0, run.stderr
        assert time.perf_counter() - start < 60
        assert f"{name}: 7 rows scored" in run.stdout
        metrics[name] = json.loads((tmp_path / name / "metrics.json").read_text())
        assert "CDN-L" in (tmp_path / name / "report.md").read_text()
    for setting in ("default", "known_object"):
        assert metrics["mat"][setting] == metrics["detr"][setting]
    assert 0 < metrics["mat"]["default"]["full"] < 100


def test_defr_evaluate_fails_naming_the_rejects(tmp_path):
    anno = small_anno(tmp_path)
    (tmp_path / "bad.csv").write_text("image,hoi,human_box,object_box,score\n"
                                      'nope.jpg,1,"[1, 1, 5, 5]","[1, 1, 5, 5]",0.5\n')
    run = defr("evaluate", str(tmp_path / "bad.csv"), "--benchmark", "hicodet", "--anno", anno, "--out",
               str(tmp_path / "out"))
    assert run.returncode == 2
    assert "1 of 1 rejected" in run.stderr and "image is not in the test set" in run.stderr
    assert not (tmp_path / "out").exists()


def test_evaluate_stage_scores_external_results_like_its_own(prepared_demo, tmp_path):
    """evaluate.external.results: the same detections as a plain table (file names, 1-based ids and boxes)
    and as the pipeline's hoi_detections.parquet give the same detection metrics."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import yaml

    from pipeline.datasets.splits import test_pairs
    from tests.result_writers import write_table
    from pipeline.schemas import HOI_DETECTIONS
    from stages import evaluate as stage

    images = pq.read_table(prepared_demo / "images.parquet")
    pairs = test_pairs(images, pq.read_table(prepared_demo / "pairs.parquet"))
    box = lambda c: np.asarray(pairs.column(c).combine_chunks().flatten(), np.float64).reshape(-1, 4)  # noqa: E731
    rng = np.random.default_rng(0)
    keep = rng.random(pairs.num_rows) < 0.7          # misses, so the numbers are not all 100
    det = {"image_id": np.asarray(pairs.column("image_id"))[keep], "hoi": np.asarray(pairs.column("hoi"))[keep],
           "human_box": box("human_box")[keep], "object_box": box("object_box")[keep],
           "score": np.round(rng.random(keep.sum()) * 64) / 64}
    own = tmp_path / "hoi_detections.parquet"
    pq.write_table(pa.table({"image_id": det["image_id"], "hoi": det["hoi"].astype(np.int16),
                             "human_box": det["human_box"].astype(np.float32).tolist(),
                             "object_box": det["object_box"].astype(np.float32).tolist(),
                             "score": det["score"].astype(np.float32)}, schema=HOI_DETECTIONS), own)
    test = images.filter(pa.compute.equal(images.column("split"), "test")).sort_by("image_id")
    ids = np.asarray(test.column("image_id"))
    write_table(dict(det, image_id=np.searchsorted(ids, det["image_id"])), test.column("file_name").to_pylist(),
                tmp_path / "external.csv")
    results = {}
    for name, external in (("own", "inputs/none"), ("external", str(tmp_path / "external.csv"))):
        params = {"evaluate": {"classification": False, "detection": True, "pr_classes": [],
                               "external": {"results": external}}, "checks": {"max_reject_fraction": 0.05}}
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        out = tmp_path / name
        stage.main(["--params", str(tmp_path / "params.yaml"), "--prepared", str(prepared_demo), "--hoi-detections",
                    str(own), "--metrics", str(out / "metrics"), "--plots", str(out / "plots"), "--report",
                    str(out / "report.md")])
        results[name] = json.loads((out / "metrics" / "detection.json").read_text())
    assert results["external"].pop("external")["rejected"] == 0
    assert results["own"] == results["external"]
    assert 0 < results["own"]["default"]["full"] < 100
