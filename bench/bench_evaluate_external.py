"""``defr evaluate`` on 1M detections of the full real HICO-DET test set: reading each format and scoring
(Default + Known-Object), against baselines measured in the same run.

    python -m bench evaluate_external      # BENCH_EXTERNAL_SCIPY=0 skips the scipy baseline (about a minute)

Detections: ``bench_evaluate.make_detections`` (1M, integer boxes), written as a Parquet table, a CSV
table and a UPT-style ``detections_NN.mat`` cache (80 files, 600 x 9,658 cells). Goals (issue 22): table
read + evaluation under 3 s; the ``.mat`` cache read under 10 s; ``defr evaluate`` starts in under 2 s.
Baselines: ``hicodet_map`` on the arrays already in memory (what reading adds), and ``scipy.io.loadmat``
of the same cache (what the fast MAT reader saves). Every format must give the same per-class APs.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.bench_evaluate import SHARED, _fmt, _timed, load_ground_truth, make_detections, to_pipeline


def main() -> None:
    path = SHARED / "instances_test2015.json"
    if not path.exists():
        print(f"skipped: {path} not found (set DEFR_SHARED_HICO)")
        return
    from pipeline.classes.hico_vocab import hico_vocabulary
    from pipeline.metrics import hicodet_map
    from pipeline.results import read_detections, read_test_set
    from pipeline.results.mat_cache import _scipy_all_boxes
    from tests.result_writers import write_mat_cache, write_table

    vocab = hico_vocabulary()
    t_anno, test = _timed(lambda: read_test_set(str(path), str(SHARED / "anno.mat")))
    print(f"annotations (instances_test2015.json + anno.mat test labels): {_fmt(t_anno)}")
    img, hoi, boxes, _, n = load_ground_truth(path)
    di, dh, db, ds = make_detections(img, hoi, boxes, n, total=1_000_000)
    conv = to_pipeline(db)
    det = {"image_id": di, "hoi": dh, "human_box": conv[:, :4], "object_box": conv[:, 4:], "score": ds}
    ids = np.arange(n)

    def evaluate(table):
        d = hicodet_map(table, test.pairs, test.rare, 600, image_ids=ids)
        k = hicodet_map(table, test.pairs, test.rare, 600, known_object=True, image_ids=ids,
                        hoi_object=vocab.hoi_object, object_images=test.object_images)
        return d, k

    t_mem, (ref, ref_ko) = _timed(lambda: evaluate(det), repeat=2)
    print(f"baseline, arrays in memory: Default + Known-Object {_fmt(t_mem)}; mAP {100 * ref.full:.2f} / "
          f"{100 * ref_ko.full:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_table(det, test.file_names, tmp / "d.parquet")
        write_table(det, test.file_names, tmp / "d.csv")
        write_mat_cache(det, n, tmp / "cache", "hico", dtype=np.float32)
        size = sum(f.stat().st_size for f in (tmp / "cache").iterdir()) / 1e6
        for name in ("d.parquet", "d.csv"):
            t_read, got = _timed(lambda: read_detections(str(tmp / name), test), repeat=2)
            t_all, (res, res_ko) = _timed(lambda: evaluate(read_detections(str(tmp / name), test).table()), repeat=2)
            same = np.array_equal(res.per_class, ref.per_class, equal_nan=True) and \
                np.array_equal(res_ko.per_class, ref_ko.per_class, equal_nan=True)
            print(f"{name}: read {_fmt(t_read)}; read + Default + Known-Object {_fmt(t_all)} "
                  f"({t_all[1] / t_mem[1]:.2f}x the in-memory CPU time; goal < 3 s); same APs: {same}")
            assert same, name
        t_mat, got = _timed(lambda: read_detections(str(tmp / "cache"), test))
        res = hicodet_map(got.table(), test.pairs, test.rare, 600, image_ids=ids)
        # float32 in the cache rounds the scores (as UPT's cache does), so compare with the same rounding
        det32 = dict(det, score=det["score"].astype(np.float32).astype(np.float64))
        ref32 = hicodet_map(det32, test.pairs, test.rare, 600, image_ids=ids)
        same = np.array_equal(res.per_class, ref32.per_class, equal_nan=True)
        print(f"UPT-style cache ({size:.0f} MB, 80 files, float32): read {_fmt(t_mat)} (goal < 10 s); same APs: {same}")
        assert same
        if os.environ.get("BENCH_EXTERNAL_SCIPY", "1") != "0":
            files = sorted((tmp / "cache").iterdir())
            t_scipy, _ = _timed(lambda: [_scipy_all_boxes(str(f), f.read_bytes()) for f in files])
            print(f"baseline scipy.io.loadmat of the same files: {_fmt(t_scipy)} -> fast reader "
                  f"{t_scipy[0] / t_mat[0]:.1f}x wall, {t_scipy[1] / t_mat[1]:.1f}x CPU")
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "pipeline.cli", "evaluate", str(tmp / "d.parquet"), "--benchmark",
                              "hicodet", "--anno", str(path), "--hico-anno", str(SHARED / "anno.mat"), "--out",
                              str(tmp / "out")], capture_output=True, text=True)
        wall = time.perf_counter() - start
        assert run.returncode == 0, run.stderr
        print(f"defr evaluate d.parquet (1M rows), whole command: {wall:.2f} s wall")
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", "import sys; from pipeline.cli.commands import parser; "
                          "parser().parse_args(['evaluate', 'x', '--benchmark', 'hico', '--anno', 'a', '--out', 'o']); "
                          "import pipeline.cli.evaluate_results, pipeline.results, pipeline.metrics; "
                          "print(sorted(m for m in ('torch', 'ray') if m in sys.modules))"],
                         capture_output=True, text=True)
    print(f"defr evaluate start-up (parse + imports, new interpreter): {time.perf_counter() - start:.2f} s wall "
          f"(goal < 2 s); torch/ray imported: {run.stdout.strip()}")
