"""V-COCO role AP and agent AP equal the official ``vsrl_eval.py``: against a loop-for-loop port of it on the
real ``vcoco_val.json`` structure with synthetic boxes and every tricky case (tests/vcoco_synthetic.py),
through both result formats, and on a hand-made image whose APs are worked out by hand, rule by rule."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from pipeline.report.vcoco import evaluate_vcoco
from tests import vcoco_synthetic as syn
from tests.vcoco_reference import ReferenceEval


@pytest.fixture(scope="module")
def val_subset(shared_vcoco, tmp_path_factory):
    """The first 40 images of the real vcoco_val.json, synthetic COCO boxes, results with every tricky case."""
    tmp = tmp_path_factory.mktemp("vcoco")
    vcoco = syn.subset(json.loads((shared_vcoco / "vcoco_val.json").read_text()), 40)
    coco = syn.instances(vcoco, seed=3)
    dets = syn.results(vcoco, coco, seed=4, every_key=False)
    (tmp / "vcoco.json").write_text(json.dumps(vcoco))
    (tmp / "instances.json").write_text(json.dumps(coco))
    (tmp / "dets.pkl").write_bytes(pickle.dumps(dets))
    return tmp, vcoco, coco, dets


def test_equals_the_official_loop_on_the_real_val_structure(val_subset):
    tmp, vcoco, coco, dets = val_subset
    ref = ReferenceEval(vcoco, coco).evaluate(dets)
    got = evaluate_vcoco(str(tmp / "dets.pkl"), str(tmp / "vcoco.json"), str(tmp / "instances.json"))
    ev, m = got["eval"], got["metrics"]
    assert np.array_equal(ev.agent_ap, ref["agent"], equal_nan=True)
    for s in ("scenario_1", "scenario_2"):
        assert np.array_equal(ev.role_ap[s], ref[s], equal_nan=True), s
        assert m[f"role_ap_{s}"] == float(np.nanmean(ref[s])) * 100     # bit for bit, point included
        point = [x["action_name"] for x in vcoco].index("point")
        without = ref[s].copy()
        without[point] = np.nan
        assert m[f"role_ap_{s}_without_point"] == float(np.nanmean(without)) * 100
    assert m["role_ap_scenario_1"] < m["role_ap_scenario_2"]       # missing role objects cost in scenario 1 only
    assert got["rejects"] == [] and any("absent" in n for n in got["notes"])
    # the same detections as a plain table (one row per person, action and role) score the same
    rows = []
    for k, d in enumerate(dets):
        for key, value in d.items():
            if key in ("image_id", "person_box"):
                continue
            action, role = key.rsplit("_", 1)
            v = np.asarray(value, np.float64).reshape(-1)
            rows.append({"image_id": int(d["image_id"]), "person": k, "person_box": np.asarray(d["person_box"]).tolist(),
                         "action": action, "role": role, "score": float(v[-1]),
                         "role_box": v[:4].tolist() if role != "agent" else None})
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp / "dets.parquet")
    table = evaluate_vcoco(str(tmp / "dets.parquet"), str(tmp / "vcoco.json"), str(tmp / "instances.json"))
    assert table["format"] == "table"
    assert {k: v for k, v in table["metrics"].items() if k.startswith(("role", "agent"))} == \
        {k: v for k, v in m.items() if k.startswith(("role", "agent"))}


def _tiny(tmp, people_first: bool = True, e7_box=(0.0, 0.0, 0.0, 0.0)):
    """One 100x100 image: a1 unannotated person, a2 holds cup a3, a4 holds nothing annotated and stands."""
    vcoco = [{"action_name": "hold", "role_name": ["agent", "obj"], "include": [[], []], "image_id": [10, 10],
              "ann_id": [2, 4], "label": [1, 1], "role_object_id": [2, 4, 3, 0]},
             {"action_name": "stand", "role_name": ["agent"], "include": [[]], "image_id": [10, 10], "ann_id": [2, 4],
              "label": [0, 1], "role_object_id": [2, 4]}]
    anns = [{"id": 1, "bbox": [0, 0, 10, 10], "category_id": 1}, {"id": 2, "bbox": [50, 50, 20, 20], "category_id": 1},
            {"id": 3, "bbox": [70, 50, 10, 10], "category_id": 47}, {"id": 4, "bbox": [20, 60, 20, 30], "category_id": 1}]
    if not people_first:
        anns = anns[1:] + anns[:1]
    coco = {"images": [{"id": 10, "width": 100, "height": 100, "file_name": "x.jpg"}],
            "annotations": [dict(a, image_id=10, area=100.0, iscrowd=0) for a in anns], "categories": syn.CATEGORIES}
    a2, a3, a4 = [50, 50, 69, 69], [70, 50, 79, 59], [20, 60, 39, 89]    # the official clean boxes (w - 1)
    nan = float("nan")
    dets = [
        {"image_id": 10, "person_box": a2, "hold_agent": 0.9, "hold_obj": a3 + [0.8], "stand_agent": 0.1},   # E0
        {"image_id": 10, "person_box": a2, "hold_agent": 0.85, "hold_obj": a3 + [0.75], "stand_agent": nan},  # E1 dup
        {"image_id": 10, "person_box": [200, 200, 220, 220], "hold_agent": 0.95, "hold_obj": a3 + [0.95],   # E2 far
         "stand_agent": 0.95},
        {"image_id": 10, "person_box": np.array(a4, np.float32), "hold_agent": 0.7,                         # E3
         "hold_obj": np.array([0, 0, 0, 0, nan]), "stand_agent": 0.6},
        {"image_id": 10, "person_box": a4, "hold_agent": 0.2, "hold_obj": [5, 5, 30, 30, 0.65],             # E4
         "stand_agent": nan},
        {"image_id": 10, "person_box": [0, 0, 9, 9], "hold_agent": 0.99, "hold_obj": a3 + [0.99],           # E5
         "stand_agent": 0.99},
        {"image_id": 10, "person_box": a2, "hold_agent": nan, "hold_obj": a3 + [nan], "stand_agent": nan},  # E6
        {"image_id": 10, "person_box": a4, "hold_agent": nan, "hold_obj": list(e7_box) + [0.6],            # E7
         "stand_agent": nan},
        {"image_id": 99, "person_box": a2, "hold_agent": 0.5},                       # rejected: not an image
        {"image_id": 10, "person_box": [1, 2, 3], "hold_agent": 0.5},                # rejected: 3 numbers
        {"image_id": 10, "person_box": a2, "hold_obj": "cup"},                      # rejected value
        "not a person",                                                              # rejected entry
    ]
    (tmp / "v.json").write_text(json.dumps(vcoco))
    (tmp / "c.json").write_text(json.dumps(coco))
    (tmp / "d.pkl").write_bytes(pickle.dumps(dets))
    return evaluate_vcoco(str(tmp / "d.pkl"), str(tmp / "v.json"), str(tmp / "c.json"), max_reject_fraction=1.0)


def test_each_rule_on_a_hand_made_image(tmp_path):
    got = _tiny(tmp_path)
    m = got["metrics"]["per_action"]
    # hold, agent: E2 (IoU 0 with everyone: the first person, a1, unannotated) and E5 (a1) are skipped;
    # E0 TP, E1 duplicate FP, E3 TP, E4 duplicate FP -> P/R (1, .5) (.5, .5) (.67, 1) (.5, 1): AP 0.5 + 0.5 * 2/3
    assert m["hold"]["agent_ap"] == pytest.approx(100 * (0.5 + 0.5 * 2 / 3), abs=1e-4)
    # hold_obj: E0 TP, E1 FP; a4 has no cup annotated: E4's box is wrong in scenario 1 (FP), right in scenario
    # 2 (TP); E7's empty box is right in scenario 1 (TP), a duplicate in scenario 2 (FP); E3 not predicted
    assert m["hold"]["obj"]["scenario_1"] == pytest.approx(75.0, abs=1e-4)
    assert m["hold"]["obj"]["scenario_2"] == pytest.approx(100 * (0.5 + 0.5 * 2 / 3), abs=1e-4)
    assert m["stand"]["agent_ap"] == pytest.approx(100.0) and m["stand"]["positives"] == 1
    assert got["metrics"]["role_ap_scenario_1"] == pytest.approx(75.0, abs=1e-4)   # the only action-role
    reasons = sorted(r["reason"] for r in got["rejects"])
    assert reasons == ["entry is not a mapping", "image is not one of the annotation file's images",
                       "person_box is not 4 finite numbers", "value is not [x1, y1, x2, y2, score] (5 numbers)"]
    assert got["total"] == 8 * 3 + 3 + 1 and got["rows"] == 16     # values read (the bad entry counts once); scored
    # an all-NaN box is "no role object" too; a box is not
    assert _tiny(tmp_path, e7_box=[float("nan")] * 4)["metrics"]["role_ap_scenario_1"] == pytest.approx(75.0, abs=1e-4)
    assert _tiny(tmp_path, e7_box=[1, 1, 2, 2])["metrics"]["role_ap_scenario_1"] == pytest.approx(50.0, abs=1e-4)
    # the IoU-0 tie goes to the first person in file order: with a2 first, E2 becomes a false positive at 0.95
    later = _tiny(tmp_path, people_first=False)["metrics"]["per_action"]["hold"]["agent_ap"]
    assert later < m["hold"]["agent_ap"] - 10


def test_defr_evaluate_vcoco_writes_every_output(tmp_path, capsys):
    from pipeline.cli.commands import main

    _tiny(tmp_path)
    args = ["evaluate", str(tmp_path / "d.pkl"), "--benchmark", "vcoco", "--anno", str(tmp_path / "v.json"),
            "--out", str(tmp_path / "out"), "--max-reject-fraction", "0.2"]
    assert main(args) == 2 and "needs --coco" in capsys.readouterr().err
    assert main([*args, "--coco", str(tmp_path / "c.json")]) == 0
    printed = capsys.readouterr().out
    assert "role AP scenario 1: 75.0000 (official, 25 action-roles)" in printed and "4 of 28 rows rejected" in printed
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "per_class_ap.csv", "pr", "rejects.csv",
                                                     "report.md"]
    m = json.loads((out / "metrics.json").read_text())
    assert m["benchmark"] == "vcoco" and m["role_ap_scenario_2_without_point"] == m["role_ap_scenario_2"]
    assert (out / "per_class_ap.csv").read_text().splitlines()[1].startswith("hold,agent,hold_agent,2,")
    assert len((out / "rejects.csv").read_text().splitlines()) == 5 and "| hold | obj | 2 |" in (out / "report.md").read_text()
    # more rejected than allowed: the run fails naming the count, and writes nothing
    assert main([*args[:-2], "--max-reject-fraction", "0.1", "--coco", str(tmp_path / "c.json"),
                 "--out", str(tmp_path / "out2")]) != 0
    assert not (tmp_path / "out2").exists()
