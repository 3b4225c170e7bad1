"""``defr evaluate --benchmark vcoco`` on a full test set's results, against the official loop in the same run.

    python -m bench vcoco          # BENCH_VCOCO_PEOPLE=100000 sets the detected people (default 100,000)

Ground truth: the real ``vcoco_train.json`` and ``vcoco_val.json`` (../shared/data/vcoco) merged into one
5,400-image file, the size of the official test split (4,946 images), with synthetic COCO boxes for every
annotation id they name (tests/vcoco_synthetic.py). Results: the official list, one dict per detected
person with all 51 keys (roles as NumPy arrays, as the peers write them), every tricky case of the
tests, replicated with jittered boxes up to ``BENCH_VCOCO_PEOPLE`` people (about 20 per image: 5.1M
values). Goal (issue 32): the whole command under 60 s. Baseline: ``tests/vcoco_reference.py``, the
loop-for-loop port of the official ``vsrl_eval.py``, on the first 300 images, where both must give the
same per-class APs (the official code itself scans every detection for every image: hours at this size).
"""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(os.environ.get("DEFR_SHARED_VCOCO", Path(__file__).resolve().parents[2] / "shared/data/vcoco"))


def merged_vcoco() -> list:
    """vcoco_train.json + vcoco_val.json as one file (every action's per-person lists concatenated)."""
    parts = [json.loads((SHARED / f"vcoco_{s}.json").read_text()) for s in ("train", "val")]
    out = []
    for a, b in zip(*parts):
        k = len(a["role_name"])
        rid = np.concatenate([np.array(x["role_object_id"]).reshape(k, -1) for x in (a, b)], axis=1)
        out.append({**a, **{f: a[f] + b[f] for f in ("image_id", "ann_id", "label")},
                    "role_object_id": rid.reshape(-1).tolist()})
    return out


def people(base: list[dict], total: int, seed: int = 0) -> list[dict]:
    """``base`` and jittered copies of its people, ``total`` in all."""
    rng = np.random.default_rng(seed)
    out = list(base)
    while len(out) < total:
        d = base[int(rng.integers(len(base)))]
        copy = dict(d, person_box=(np.asarray(d["person_box"], np.float64) + rng.normal(0, 4, 4)).tolist())
        for k, v in d.items():      # new scores: a detector's copies do not tie with the originals
            if k.endswith("_agent"):
                copy[k] = float(rng.random())
            elif k not in ("image_id", "person_box"):
                copy[k] = np.append(np.asarray(v, np.float64)[:4], rng.random())
        out.append(copy)
    return out[:total]


def main() -> None:
    if not (SHARED / "vcoco_train.json").exists():
        print(f"skipped: {SHARED}/vcoco_train.json not found (set DEFR_SHARED_VCOCO)")
        return
    from pipeline.report.vcoco import evaluate_vcoco
    from tests import vcoco_synthetic as syn
    from tests.vcoco_reference import ReferenceEval

    total = int(os.environ.get("BENCH_VCOCO_PEOPLE", "100000"))
    vcoco = merged_vcoco()
    coco = syn.instances(vcoco, seed=0)
    base = syn.results(vcoco, coco, seed=1)
    dets = people(base, total)
    n_images = len(set(vcoco[0]["image_id"]))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "vcoco.json").write_text(json.dumps(vcoco))
        (tmp / "instances.json").write_text(json.dumps(coco))
        (tmp / "dets.pkl").write_bytes(pickle.dumps(dets, protocol=4))
        size = (tmp / "dets.pkl").stat().st_size / 1e6
        print(f"{n_images:,} images, {len(coco['annotations']):,} COCO annotations; {len(dets):,} detected people "
              f"({len(dets) * 51:,} values), dets.pkl {size:.0f} MB")
        del dets
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "pipeline.cli", "evaluate", str(tmp / "dets.pkl"), "--benchmark",
                              "vcoco", "--anno", str(tmp / "vcoco.json"), "--coco", str(tmp / "instances.json"),
                              "--out", str(tmp / "out")], capture_output=True, text=True)
        wall = time.perf_counter() - start
        assert run.returncode == 0, run.stderr
        m = json.loads((tmp / "out/metrics.json").read_text())
        t = m["timing"]
        print(f"defr evaluate, whole command: {wall:.1f} s wall (goal < 60 s): annotations {t['read_annotations_s']} s, "
              f"results {t['read_results_s']} s, scoring {t['evaluate_s']} s; role AP S1 {m['role_ap_scenario_1']:.2f} "
              f"S2 {m['role_ap_scenario_2']:.2f}")
        # baseline: the official loop, on the first 300 images, and ours on the same
        small = syn.subset(vcoco, 300)
        keep = set(small[0]["image_id"])
        sub = [d for d in base if int(d["image_id"]) in keep]
        (tmp / "small.json").write_text(json.dumps(small))
        (tmp / "small.pkl").write_bytes(pickle.dumps(sub))
        t0 = time.perf_counter()
        ref = ReferenceEval(small, coco).evaluate(sub)
        t_ref = time.perf_counter() - t0
        t0 = time.perf_counter()
        got = evaluate_vcoco(str(tmp / "small.pkl"), str(tmp / "small.json"), str(tmp / "instances.json"))["eval"]
        t_ours = time.perf_counter() - t0
        same = np.array_equal(got.agent_ap, ref["agent"], equal_nan=True) and all(
            np.array_equal(got.role_ap[s], ref[s], equal_nan=True) for s in ("scenario_1", "scenario_2"))
        print(f"first 300 images ({len(sub):,} people): official loop {t_ref:.1f} s, defr evaluate (read + score) "
              f"{t_ours:.2f} s: {t_ref / t_ours:.0f}x; same APs: {same}")
        assert same
