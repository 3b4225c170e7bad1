"""prepare throughput on demo data, and converting the real HICO-DET test annotations.

    python -m bench prepare

Baselines measured in the same run: image checking with 1 thread (vs the stage's thread pool) and
a header-only open (vs a full decode); for the annotations, a bare ``json.load`` of the same file.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from pipeline.demo.scenes import generate
from pipeline.datasets.adapters import prepare_dataset
from pipeline.classes.hico_vocab import hico_vocabulary
from pipeline.datasets.hicodet import read_instances_json

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "hico" / "instances_test2015.json"


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    vocab = hico_vocabulary()
    with tempfile.TemporaryDirectory() as tmp:
        t_gen, _ = _timed(lambda: generate(Path(tmp) / "raw", vocab, n_train=1800, n_test=400))
        files = {"anno": "anno.mat", "hicodet_train": "instances_train2015.json",
                 "hicodet_test": "instances_test2015.json"}
        n = 2200
        print(f"generate demo: {n / t_gen:.0f} images/s ({t_gen:.1f} s for {n})")
        runs = {}
        for label, kw in (("1 thread, full decode", dict(workers=1)),
                          ("8 threads, full decode", dict(workers=8)),
                          ("8 threads, header only", dict(workers=8, decode_images=False))):
            runs[label], out = _timed(lambda: prepare_dataset("hico", str(Path(tmp) / "raw"), files, **kw))
            assert out.images.num_rows == n
        base = runs["1 thread, full decode"]
        for label, t in runs.items():
            print(f"prepare ({label}): {n / t:.0f} images/s, {base / t:.2f}x the 1-thread baseline")
    if SHARED.exists():
        t_json, _ = _timed(lambda: json.loads(SHARED.read_text()))
        t_read, (images, _) = _timed(lambda: read_instances_json(str(SHARED)))
        print(f"real HICO-DET test annotations ({len(images)} images, "
              f"{sum(len(i.hois) for i in images)} pairs): {t_read:.2f} s, "
              f"{t_read / t_json:.2f}x a bare json.load ({t_json:.2f} s)")
    else:
        print(f"real HICO-DET annotations not found at {SHARED}: skipped")
