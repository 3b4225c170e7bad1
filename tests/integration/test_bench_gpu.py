"""`python -m bench gpu --device cpu --tiny`: the GPU check's dry run, so the command a borrowed GPU runs
cannot rot. Every part runs for real (the tiny model at 96 px, the training recipe on Ray Train with 2 CPU
workers on a local Ray, a gloo all-reduce between two processes)."""
from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_bench_gpu_dry_run_runs_every_part_and_writes_its_json(tmp_path, monkeypatch, capsys):
    import ray

    from bench.__main__ import main

    monkeypatch.chdir(tmp_path)
    started = not ray.is_initialized()
    try:
        main(["gpu", "--device", "cpu", "--tiny", "--out", "out.json"])
    finally:
        if started and ray.is_initialized():
            ray.shutdown()  # the local Ray that train_pipeline started in this process
    r = json.loads((tmp_path / "out.json").read_text())
    failed = {k: v["error"] for k, v in r.items() if isinstance(v, dict) and "error" in v}
    assert not failed, failed
    assert r["mode"] == "tiny" and r["environment"]["device"] == "cpu"
    t = r["train"]
    assert t["images_per_s"] > 0 and t["step_s"] > 0 and t["tflop_per_image"] > 0 and t["mfu"] is None
    p = r["input_pipeline"]
    assert min(p["pil_images_per_s"], p["batch_images_per_s"], p["batch_decode_on_device_images_per_s"]) > 0
    tp = r["train_pipeline"]  # the recipe itself: 2 Ray Train workers (DDP, gloo), the loader, JPEG files
    assert tp["workers"] == 2 and tp["global_batch"] == 8 and tp["steps_per_epoch"] == 3
    assert 0 < tp["images_per_s"] and 0 < tp["ceiling_images_per_s"] and 0 <= tp["data_wait_fraction"] <= 1
    assert tp["ceiling_data_wait_fraction"] < tp["data_wait_fraction"]  # ready tensors wait for nothing
    s = r["predict_score_regions"]  # at the pipeline's own precision: fp32 on CPU, identical to fp32
    assert s["predict_images_per_s"] > 0 and s["score_regions_pairs_per_s"] > 0 and s["precision"] == "fp32"
    assert s["max_sigmoid_diff_vs_fp32"] == 0 and s["top10_overlap_vs_fp32"] == 1
    assert r["allreduce"]["sum_correct"] and r["allreduce"]["backend"] == "gloo"
    m = r["mmdet"]
    if "skipped" in m:  # only when the MMDetection stack is really absent (make install-detect adds it)
        with pytest.raises(ImportError):
            import mmcv.ops  # noqa: F401
            import mmdet  # noqa: F401
    else:
        assert m["nms_same_as_cpu"] and m["roi_align_max_abs_diff"] == 0 and m["images_per_s"] > 0
    assert "[bench gpu] train:" in capsys.readouterr().out


def test_options_need_exactly_one_benchmark_name():
    from bench.__main__ import main

    with pytest.raises(SystemExit, match="need exactly one benchmark name"):
        main(["gpu", "loader", "--tiny"])
