"""bench/large_demo.py (the data of `bench scale`): the parallel generator writes a HICO-format dataset
that the hico adapter reads whole, and bench scale's table fits the growth exponents."""
from __future__ import annotations

import pytest

from bench.bench_scale import exponent, table
from pipeline.datasets.adapters import prepare_dataset
from bench.large_demo import generate_large

FILES = {"anno": "anno.mat", "hicodet_train": "instances_train2015.json", "hicodet_test": "instances_test2015.json",
         "train_images": "images/train2015", "test_images": "images/test2015"}


def test_parallel_generation_is_a_dataset_the_hico_adapter_reads_whole(tmp_path):
    summary = generate_large(tmp_path, n_train=260, n_test=40, image_size=(64, 48), workers=2)  # 2 train chunks
    assert summary["train"]["images"] == 260 and summary["test"]["images"] == 40
    prepared = prepare_dataset("hico", str(tmp_path), FILES, max_reject_fraction=0.0)
    splits = prepared.images.column("split").to_pylist()
    assert len(splits) == 300 and splits.count("test") == 40
    names = prepared.images.column("file_name").to_pylist()
    assert len(set(names)) == 300  # chunks never overwrite each other's images
    assert prepared.pairs.num_rows == summary["train"]["pairs"] + summary["test"]["pairs"]
    # the chunks draw from different generators: no two images of a split are the same picture
    train = sorted((tmp_path / "images" / "train2015").iterdir())
    assert train[0].read_bytes() != train[250].read_bytes()


def test_growth_exponents():
    assert exponent([1000, 10000], [10, 100]) == pytest.approx(1.0)
    assert exponent([1000, 10000], [10, 10]) == pytest.approx(0.0)
    assert exponent([1000], [10]) is None
    rows = [{"stage": "predict", "images": n, "wall_s": w, "cpu_s": w, "peak_rss_mb": 100.0, "output_mb": 1.0}
            for n, w in ((1000, 10.0), (4000, 20.0), (16000, 80.0))]
    line = next(r for r in table(rows).splitlines() if r.startswith("| predict"))
    assert line.endswith("| 0.75 / 1.00 | 1.00 | 0.00 |"), line
