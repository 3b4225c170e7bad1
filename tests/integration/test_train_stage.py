"""The train stage for real on the demo data: one Ray Train worker as DVC runs it, with its live metrics
(DVCLive) while it goes (the smoke test); a Ray Tune sweep; checkpoints of DVC's temporary experiment
workspaces.
Two workers (gloo, CPU) with one of them killed: tests/integration/test_object_store_train.py."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
import yaml

from pipeline import schemas, storage
from pipeline.datasets.labels import label_matrix
from pipeline.metrics.classification import hico_classification_map
from pipeline.model import inference_transform, load_checkpoint
from pipeline.training.dataset import load_image, split_rows
from pipeline.training.runs import read_text_embeddings
from stages import train

pytestmark = pytest.mark.integration

TRAIN = {"demo_only": True, "model": "defr-tiny-vit", "pretrained": "", "image_size": 48, "gamma": 100,
         "classifier_position": "auto", "init": "text", "loss": "lse_sign", "ambiguous_as": "negative",
         "unknown_as": "negative", "lr": 1e-3, "epochs": 3, "restart_epochs": 5, "global_batch": 32,
         "min_per_class": 4, "crop_scale": 0.5, "jitter": 0.4, "seed": 0}
PLACE = {"num_workers": 2, "use_gpu": False, "cpus_per_worker": 1, "micro_batch": 16, "loader_workers": 0,
         "run_name": "test", "max_failures": 2}


def write_params(path, train=None, **placement):
    """params.yaml with the train section (TRAIN | train) and placement.train (PLACE | placement)."""
    path.write_text(yaml.safe_dump({"train": TRAIN | (train or {}), "placement": {"train": PLACE | placement}}))


def write_text_embeddings(prepared, path, dim=32):
    """Stand-in language embeddings with verb/object structure (sum of a verb and an object vector)."""
    classes = storage.read_parquet(prepared / "classes.parquet")
    rng = np.random.default_rng(0)
    verb, obj = np.asarray(classes.column("verb_idx")), np.asarray(classes.column("object_idx"))
    emb = (rng.normal(size=(verb.max() + 1, dim))[verb] + rng.normal(size=(obj.max() + 1, dim))[obj]).astype("f4")
    table = pa.table({"hoi": np.arange(len(emb), dtype=np.int16), "prompt": [""] * len(emb), "embedding": list(emb)})
    storage.write_parquet(schemas.conform(table, schemas.TEXT_EMBEDDINGS, "emb"), path,
                          metadata={"model": "test-verb+object", "dim": dim})
    return path


def _args(tmp_path, prepared, emb):
    return ["--params", str(tmp_path / "params.yaml"), "--images", str(prepared / "images.parquet"),
            "--text-embeddings", str(emb), "--model-out", str(tmp_path / "models" / "defr"),
            "--history", str(tmp_path / "plots" / "history.csv"), "--metrics", str(tmp_path / "metrics.json"),
            "--live", str(tmp_path / "live")]


def check_exported_model(model_dir, prepared, metrics) -> None:
    """The exported checkpoint loads, names the classes of the classes table beside images.parquet, and
    reproduces the validation mAP the run logged for its best epoch."""
    model = load_checkpoint(model_dir)
    names = storage.read_parquet(prepared / "classes.parquet").column("name").to_pylist()
    assert [c["name"] for c in model.config.classes] == names and model.config.num_classes == 600
    val = split_rows(storage.read_parquet(prepared / "images.parquet"), "val")
    tf = inference_transform(model.config)
    with torch.no_grad():
        scores = model(torch.stack([tf(load_image(u)) for u in val.column("uri").to_pylist()])).numpy()
    val_map = hico_classification_map(scores, label_matrix(val, 600)).map
    assert 100 * val_map == pytest.approx(metrics["best_val_map"], abs=1e-4)  # metrics/ hold percent


def test_bad_text_embeddings_are_named(prepared_demo, tmp_path):
    t = pa.table({"hoi": np.arange(599, dtype=np.int16), "prompt": [""] * 599,
                  "embedding": list(np.ones((599, 8), "f4"))})
    storage.write_parquet(t, tmp_path / "emb.parquet")
    with pytest.raises(ValueError, match="emb.parquet.*599 rows"):
        read_text_embeddings(str(tmp_path / "emb.parquet"), 600)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_ray_tune_sweep_runs_one_train_run_per_grid_point(prepared_demo, tmp_path):
    emb = write_text_embeddings(prepared_demo, tmp_path / "text_embeddings.parquet")
    write_params(tmp_path / "params.yaml", {"epochs": 1}, storage_path=str(tmp_path / "runs"), num_workers=1)
    (tmp_path / "sweep.yaml").write_text("gamma: [50, 100]\n")
    out = train.main(_args(tmp_path, prepared_demo, emb) + ["--sweep", str(tmp_path / "sweep.yaml"),
                                                            "--sweep-out", str(tmp_path / "sweep.csv")])
    assert out["trials"] == 2
    rows = (tmp_path / "sweep.csv").read_text().splitlines()
    assert rows[0].startswith("config/gamma,best_val_map") and len(rows) == 3
    assert not (tmp_path / "models" / "defr").exists()  # a sweep exports nothing


def _tsv(path):
    """{step: value} of a DVCLive metric history file (header ``step<TAB>name``: no timestamp column)."""
    header, *rows = path.read_text().splitlines()
    assert header.split("\t") == ["step", path.stem], header
    return {int(step): float(value) for step, value in (r.split("\t") for r in rows)}


@pytest.mark.smoke  # make test-fast: train (one Ray Train worker, three short epochs)
@pytest.mark.timeout(1200)
def test_one_worker_exports_a_model_that_names_its_classes_and_shows_each_epoch_live(prepared_demo, shared_ray,
                                                                                     tmp_path):
    """The train stage end to end at its smallest, as DVC runs it (a process of its own joining the one Ray
    of the session): DVCLive's metrics.json holds an early epoch while later epochs still train; at the end
    the live files hold every epoch, agree with history.csv and carry no timestamps; metrics/train.json
    keeps its keys; the exported checkpoint loads, names the classes of classes.parquet and reproduces the
    logged validation mAP."""
    emb = write_text_embeddings(prepared_demo, tmp_path / "text_embeddings.parquet")
    write_params(tmp_path / "params.yaml", train={"epochs": 3}, num_workers=1, max_failures=0,
                 storage_path=str(tmp_path / "runs"))
    live = tmp_path / "live"
    root = Path(__file__).resolve().parents[2]
    # joins the session's Ray, as a stage of `dvc repro` joins the one Ray of scripts/with_local_ray.py
    env = {**os.environ, **shared_ray.env, "DEFR_LOG_DIR": str(tmp_path / "logs"), "RAY_ADDRESS": shared_ray.address}
    proc = subprocess.Popen([sys.executable, "-m", "stages.train", *_args(tmp_path, prepared_demo, emb)], cwd=root,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen_while_running = None
    try:
        while proc.poll() is None:
            if (live / "metrics.json").exists():
                summary = json.loads((live / "metrics.json").read_text())
                if proc.poll() is None and summary.get("step", 99) < 2:
                    seen_while_running = summary
                    break
            time.sleep(0.2)
        assert proc.wait(timeout=500) == 0, (tmp_path / "logs" / "train.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert seen_while_running is not None, "no live metrics before the run ended"
    assert seen_while_running["step"] in (0, 1) and 0 <= seen_while_running["val_map"] <= 100

    history = (tmp_path / "plots" / "history.csv").read_text().splitlines()
    assert history[0] == "epoch,train_loss,val_map,lr" and len(history) == 4
    val_map = {int(row.split(",")[0]): float(row.split(",")[2]) for row in history[1:]}
    live_map = _tsv(live / "plots" / "metrics" / "val_map.tsv")
    assert sorted(live_map) == [0, 1, 2]
    assert all(live_map[e] == pytest.approx(val_map[e], abs=1e-4) for e in val_map)  # both percent
    for name in ("loss", "lr", "images_per_s_per_worker", "data_wait"):
        assert sorted(_tsv(live / "plots" / "metrics" / "train" / f"{name}.tsv")) == [0, 1, 2]
    assert all(0 < v < 1 for v in _tsv(live / "plots" / "metrics" / "train" / "data_wait.tsv").values())
    summary = json.loads((live / "metrics.json").read_text())
    assert summary["step"] == 2 and summary["val_map"] == pytest.approx(val_map[2], abs=1e-4)
    assert summary["train"]["effective_global_batch"] == 32
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) == {"best_val_map", "best_epoch", "epochs", "final_train_loss", "resumes", "model", "run",
                            "demo_only", "effective_global_batch", "workers", "micro_batch", "accumulation"}
    assert metrics["epochs"] == 3 and metrics["resumes"] == 0
    # train.global_batch 32 on one worker with micro-batches of at most 16: 2 accumulated micro-batches
    assert (metrics["effective_global_batch"], metrics["workers"], metrics["micro_batch"],
            metrics["accumulation"]) == (32, 1, 16, 2)
    log = (tmp_path / "logs" / "train.log").read_text()
    assert "global batch 32 = 1 worker(s) x 16 images x 2 accumulated step(s)" in log
    check_exported_model(tmp_path / "models" / "defr", prepared_demo, metrics)


def test_a_global_batch_the_workers_cannot_split_evenly_is_refused_before_anything_starts(prepared_demo, tmp_path):
    """25 images over 2 workers: refused by the stage's checks, naming the key, the workers and the nearest
    valid choices, before Ray or Ray Train start (no run folder, no model)."""
    from stage_support.params import ParamsError

    write_params(tmp_path / "params.yaml", train={"global_batch": 25}, num_workers=2,
                 storage_path=str(tmp_path / "runs"))
    with pytest.raises(ParamsError, match="train.global_batch = 25 does not split evenly over "
                                          "placement.train.num_workers = 2 .* 24 or 26, or placement.train.num_workers 1 or 5"):
        train.main(_args(tmp_path, prepared_demo, tmp_path / "no-embeddings.parquet"))
    assert not (tmp_path / "runs").exists() and not (tmp_path / "models").exists()
    # the old key is refused with where it lives now
    write_params(tmp_path / "params.yaml", train={"batch_size": 16})
    with pytest.raises(ParamsError, match="train.batch_size: this key moved to placement.train.micro_batch"):
        train.main(_args(tmp_path, prepared_demo, tmp_path / "no-embeddings.parquet"))


def test_a_relative_storage_path_is_relative_to_the_main_workspace(tmp_path):
    """DVC runs `dvc exp run --temp` / queued commands in a copy under .dvc/tmp/exps/ with DVC_ROOT naming the
    main workspace; checkpoints must outlive the copy (a real `dvc exp run --temp`: test_experiments.py)."""
    main = str(tmp_path / "project")
    assert train.checkpoint_root("runs", {"DVC_ROOT": main}) == os.path.join(main, "runs")
    assert train.checkpoint_root("runs", {}) == "runs"  # outside DVC: the working directory, as before
    assert train.checkpoint_root("/abs/runs", {"DVC_ROOT": main}) == "/abs/runs"
    assert train.checkpoint_root("s3://bucket/runs", {"DVC_ROOT": main}) == "s3://bucket/runs"


def test_a_ray_without_a_dashboard_trains_without_the_placement_group_cleaner(prepared_demo, tmp_path):
    """Ray Train's placement-group cleaner polls the dashboard's state API; a local Ray has no dashboard, where
    each poll blocks 40 s and a short run then waits 12-16 s at its end (launcher._trainer_without_state_api).
    There the trainer leaves that one callback out and keeps every other; the name still being Ray's is
    checked, so a Ray that renames it fails here instead of silently keeping the wait."""
    from pipeline.distributed import init_ray
    from pipeline.model import ModelConfig
    from pipeline.training import launcher

    init_ray(None, num_cpus=2)  # a local Ray (or the session's LocalHead): neither has a dashboard
    assert launcher._no_dashboard_here()
    config = launcher.loop_config(str(prepared_demo / "images.parquet"), None, ModelConfig(
        model_name="defr-tiny-vit", num_classes=600, image_size=48))
    trainer = launcher.make_trainer(config, 1, False, "cleaner", str(tmp_path / "runs"), 0)
    kept = [type(c).__name__ for c in trainer._create_default_callbacks()]
    ray_default = [type(c).__name__ for c in super(type(trainer), trainer)._create_default_callbacks()]
    assert launcher.CLEANER_CALLBACK in ray_default
    assert kept == [name for name in ray_default if name != launcher.CLEANER_CALLBACK]


def test_listening_tells_an_open_port_from_a_closed_one():
    import socket

    from pipeline.distributed import listening

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        assert listening(address)
    assert not listening(address)  # closed now
    assert not listening("not-an-address")
