"""stage_support/summary.py, the block `make demo` prints: numbers in percent from metrics/*.json, DEMO ONLY on
every line when an input was demo-only, and 'not evaluated' lines instead of a crash."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from stage_support import summary

ROOT = Path(__file__).resolve().parents[2]
TRAIN = {"best_val_map": 27.8, "best_epoch": 6, "epochs": 8, "resumes": 1, "demo_only": True}
CLASSIFICATION = {"map": 20.94, "known_object_map": 54.1, "few5": 2.3, "few10": 2.1,
                  "num_classes": {"evaluated": 29, "few5": 5, "few10": 11}, "note": "DEMO ONLY data"}
DETECTION = {"default": {"full": 41.7, "rare": 31.2, "non_rare": 48.0},
             "known_object": {"full": 42.2, "rare": 30.0, "non_rare": 49.25}, "note": "demo"}


def write(folder: Path, **files) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / f"{name}.json").write_text(content if isinstance(content, str) else json.dumps(content))
    return folder


def test_demo_metrics_give_one_line_each_in_percent_all_marked_demo_only(tmp_path):
    out = summary.lines(write(tmp_path / "m", train=TRAIN, classification=CLASSIFICATION, detection=DETECTION))
    assert out[0].startswith("== DEMO ONLY results (synthetic data")
    assert out[1] == "DEMO ONLY train      best val mAP  27.8  (epoch 6 of 8, resumed 1x)"   # 0.278 -> 27.8 %
    assert out[2] == ("DEMO ONLY classify   mAP  20.9 (29 classes)  known object  54.1  Few@5   2.3 (5)  "
                      "Few@10   2.1 (11)")
    assert out[3] == "DEMO ONLY HOI det.   default      Full  41.7  Rare  31.2  Non-rare  48.0"
    assert out[4] == "DEMO ONLY HOI det.   known object Full  42.2  Rare  30.0  Non-rare  49.2"
    assert out[5].startswith("report     reports/evaluation.md") and out[6].startswith("plots      ")
    assert len(out) == 7


def test_real_metrics_are_not_labelled_demo_and_missing_numbers_say_so(tmp_path):
    train = {k: v for k, v in TRAIN.items() if k != "demo_only"} | {"best_val_map": None}
    cls = {"map": 61.5, "num_classes": {"evaluated": 600}, "note": ""}
    out = summary.lines(write(tmp_path / "m", train=train, classification=cls, detection={"skipped": "no boxes"}))
    assert out[0] == "== results =="
    assert not any("DEMO" in line for line in out)
    assert out[1] == "train      best val mAP   n/a  (epoch 6 of 8, resumed 1x)"
    assert out[2] == "classify   mAP  61.5 (600 classes)  known object   n/a"
    assert out[3] == "HOI det.   not evaluated: no boxes"


def test_missing_empty_or_corrupt_metrics_never_crash(tmp_path):
    assert summary.lines(tmp_path / "nothing")[0] == "== results =="
    assert len(summary.lines(tmp_path / "nothing")) == 3       # title, report, plots
    out = summary.lines(write(tmp_path / "m", train="{not json", classification={"reason": "MPII: single label"},
                              detection="{}"))
    assert out[1] == "classify   not evaluated: MPII: single label" and len(out) == 4


def test_the_command_prints_the_lines_of_the_metrics_folder_it_is_given(tmp_path):
    folder = write(tmp_path / "m", train=TRAIN)
    out = subprocess.run([sys.executable, "-m", "stage_support.summary", "--metrics", str(folder)], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == summary.lines(folder)
    assert "best val mAP  27.8" in out
