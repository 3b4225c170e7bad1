"""``defr evaluate``: HICO scores in every table form, the outputs it writes, and that it imports neither
torch nor Ray."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.cli import main
from pipeline.classes.hico_vocab import hico_vocabulary
from pipeline.metrics import hico_classification_map
from tests.conftest import ROOT
from tests.unit.test_results_formats import small_anno, small_detections

VOCAB = hico_vocabulary()


def test_evaluate_imports_neither_torch_nor_ray(tmp_path):
    anno = small_anno(tmp_path)
    code = ("import sys, time; t = time.perf_counter(); from pipeline.cli import main; "
            f"rc = main(['evaluate', {str(tmp_path / 'none.csv')!r}, '--benchmark', 'hicodet', '--anno', {anno!r}, "
            f"'--out', {str(tmp_path / 'out')!r}]); "
            "print(rc, sorted(m for m in ('torch', 'ray', 'mmdet', 'open_clip') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.stdout.split("\n")[-2] == "2 []", run.stdout + run.stderr   # 2: the results file does not exist
    assert "none.csv: no such file" in run.stderr


def test_hicodet_outputs_and_compare(tmp_path, capsys):
    from pipeline.results import read_test_set
    from tests.result_writers import write_table

    anno = small_anno(tmp_path)
    test = read_test_set(anno)
    write_table(small_detections(test), test.file_names, tmp_path / "d.parquet")
    ride_bicycle = VOCAB.index("ride", "bicycle") + 1
    rc = main(["evaluate", str(tmp_path / "d.parquet"), "--benchmark", "hicodet", "--anno", anno, "--out",
               str(tmp_path / "out"), "--compare", "QPIC", "defr-b16", "--pr-classes", str(ride_bicycle)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "default       mAP Full" in printed and "known_object" in printed
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "per_class_ap.csv", "pr", "rejects.csv",
                                                     "report.md"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_classes"] == {"full": 2, "rare": 1, "non_rare": 1} and metrics["format"] == "table"
    report = (out / "report.md").read_text()
    assert "| QPIC, ResNet-50 (Default) | 29.07 | 21.85 | 31.23 | DEFR paper" in report
    assert (out / "pr" / f"hoi_{ride_bicycle:03d}.csv").exists() and (out / "pr" / "pr.png").exists()
    assert main(["evaluate", str(tmp_path / "d.parquet"), "--benchmark", "hicodet", "--anno", anno, "--out",
                 str(out), "--compare", "nosuch"]) == 2
    assert "no published hicodet result by that name" in capsys.readouterr().err


def test_hico_scores_in_every_table_form_equal_the_evaluator(shared_hico, tmp_path):
    from pipeline.cli.evaluate_results import evaluate_hico
    from pipeline.results.testset import read_anno_test

    names, labels = read_anno_test(str(shared_hico / "anno.mat"), VOCAB)
    rng = np.random.default_rng(0)
    # quarter-steps so that every form (CSV text included) carries the exact same numbers
    scores = np.round((rng.random(labels.shape) + 0.6 * (labels == 1)) * 4) / 4
    expect = hico_classification_map(scores, labels)
    expect_ko = hico_classification_map(scores, labels, known_object=True, hoi_object=VOCAB.hoi_object)
    order = rng.permutation(len(names))      # row order must not matter
    table = pa.table({"image": [names[i] for i in order], "scores": [scores[i].tolist() for i in order]})
    pq.write_table(table, tmp_path / "s.parquet")
    with open(tmp_path / "s.jsonl", "w") as f:
        for i in order:
            f.write(json.dumps({"image": names[i], "scores": scores[i].tolist()}) + "\n")
    with open(tmp_path / "s.csv", "w") as f:
        f.write("image,scores\n" + "".join(f'{names[i]},"{scores[i].tolist()}"\n' for i in order))
    for ext in ("parquet", "jsonl", "csv"):
        result = evaluate_hico(str(tmp_path / f"s.{ext}"), str(shared_hico / "anno.mat"))
        m = result["metrics"]
        assert m["map"] == round(expect.map * 100, 4) and m["known_object_map"] == round(expect_ko.map * 100, 4)
        assert m["num_classes"]["few1"] == 51 and m["num_classes"]["few1_defr"] == 49
        assert not result["rejects"]


def test_hico_rejects_and_missing_images(shared_hico, tmp_path):
    from pipeline.cli.evaluate_results import evaluate_hico

    from pipeline.results.testset import read_anno_test

    names, labels = read_anno_test(str(shared_hico / "anno.mat"), VOCAB)
    rows = [{"image": n, "scores": [0.0] * 600} for n in names[:-3]]
    rows += [{"image": names[0], "scores": [1.0] * 600}, {"image": "x.jpg", "scores": [0.0] * 600},
             {"image": names[-3], "scores": [0.0] * 599}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "s.parquet")
    result = evaluate_hico(str(tmp_path / "s.parquet"), str(shared_hico / "anno.mat"))
    reasons = sorted(r["reason"] for r in result["rejects"])
    assert reasons == sorted(["image repeated (the first row is used)", "image is not in the test set",
                              "599 scores, expected 600"] + ["test image has no scores (ranked last)"] * 3)
