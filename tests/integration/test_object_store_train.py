"""Two Ray Train workers, one of them SIGKILLed mid-run, with checkpoints in a bucket: the train stage with
``storage_path: s3://bucket/runs`` on the loopback S3 server (tests/s3_server.py) resumes from the checkpoint
in the bucket and exports exactly the model of the same run on local disk with no kill; that model
reproduces its logged validation mAP; a re-run resumes the finished run from the bucket.

Tiny on purpose (defr-tiny-vit at 48 px, 2 epochs): the point is surviving the kill and where checkpoints
go and come back from, not learning.
"""
from __future__ import annotations

import json

import pytest
import yaml
from safetensors.torch import load_file

from pipeline.model import load_checkpoint
from stages import train
from tests.integration.test_train_stage import PLACE, TRAIN, check_exported_model, write_text_embeddings
from tests.s3_server import s3, s3_server  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARAMS = TRAIN | {"epochs": 2}
PLACEMENT = PLACE | {"num_workers": 2, "max_failures": 2, "run_name": "s3test"}


def params(storage_path: str) -> str:
    return yaml.safe_dump({"train": PARAMS, "placement": {"train": PLACEMENT | {"storage_path": storage_path}}})


def fresh_ray() -> None:
    """Stops a Ray that this test process started earlier, so the next local Ray (and its workers)
    starts with the AWS_* variables the fixture exported. The runs of the test share that Ray (the
    stage joins a Ray its process already has): each run is a new Ray Train run either way."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


def run_train(tmp_path, prepared, emb, storage_path: str, tag: str) -> dict:
    work = tmp_path / tag
    work.mkdir()
    (work / "params.yaml").write_text(params(storage_path))
    return train.main(["--params", str(work / "params.yaml"), "--images", str(prepared / "images.parquet"),
                       "--text-embeddings", str(emb), "--model-out", str(work / "model"),
                       "--history", str(work / "history.csv"), "--metrics", str(work / "metrics.json")]) \
        | {"dir": work}


def run_killed(tmp_path, prepared, emb, storage_path: str, monkeypatch, tag: str) -> dict:
    marker = tmp_path / f"killed-{tag}.txt"
    monkeypatch.setenv("DEFR_FAULT_INJECTION", f"1:1:{marker}")  # SIGKILL rank 1 in epoch 1, once
    metrics = run_train(tmp_path, prepared, emb, storage_path, tag)
    monkeypatch.delenv("DEFR_FAULT_INJECTION")
    assert marker.exists(), f"{tag}: the fault hook never fired"
    assert metrics["resumes"] == 1 and metrics["epochs"] == PARAMS["epochs"], metrics
    history = (metrics["dir"] / "history.csv").read_text().splitlines()
    assert history[0] == "epoch,train_loss,val_map,lr" and [h.split(",")[0] for h in history[1:]] == ["0", "1"]
    assert json.loads((metrics["dir"] / "metrics.json").read_text())["best_val_map"] == metrics["best_val_map"]
    return metrics


@pytest.fixture
def own_ray():
    fresh_ray()
    yield
    fresh_ray()


@pytest.mark.timeout(1800)
def test_two_workers_survive_a_killed_worker_from_a_bucket_and_match_an_uncut_local_run(
        s3, prepared_demo, tmp_path, monkeypatch, own_ray):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    emb = write_text_embeddings(prepared_demo, tmp_path / "text_embeddings.parquet")
    bucket = s3.new_bucket()

    in_bucket = run_killed(tmp_path, prepared_demo, emb, f"s3://{bucket}/runs", monkeypatch, "s3")
    run = in_bucket["run"]
    keys = s3.keys(bucket, f"runs/{run}/")
    checkpoints = sorted({k.split("/")[2] for k in keys if k.split("/")[2].startswith("checkpoint_")})
    assert checkpoints, f"no checkpoint in s3://{bucket}/runs/{run}: {keys[:20]}"
    assert any(k.endswith("/model/model.safetensors") for k in keys)
    assert not (tmp_path / "s3" / "runs").exists()

    # The exported checkpoint is the demo's, made from these text embeddings, and reproduces its epoch's mAP.
    model = load_checkpoint(in_bucket["dir"] / "model")
    assert model.config.metadata["demo_only"] is True and model.config.text_model == "test-verb+object"
    check_exported_model(in_bucket["dir"] / "model", prepared_demo, in_bucket)

    # The same run on local disk, with no worker killed: the run in the bucket, killed and resumed from the
    # bucket, exports exactly its best epoch (nothing lost in the kill or on the way through the bucket).
    local = run_train(tmp_path, prepared_demo, emb, str(tmp_path / "local-runs"), "local")
    assert local["run"] == run and (tmp_path / "local-runs" / run).is_dir() and local["resumes"] == 0
    assert (in_bucket["best_epoch"], in_bucket["best_val_map"]) == (local["best_epoch"], local["best_val_map"])
    got = load_file(str(in_bucket["dir"] / "model" / "model.safetensors"))
    want = load_file(str(local["dir"] / "model" / "model.safetensors"))
    assert got.keys() == want.keys()
    for name in want:
        assert got[name].equal(want[name]), name
    assert json.loads((in_bucket["dir"] / "model" / "config.json").read_text()) == \
        json.loads((local["dir"] / "model" / "config.json").read_text())

    # A re-run with the same params resumes the finished run from the bucket: nothing is trained again.
    again = run_train(tmp_path, prepared_demo, emb, f"s3://{bucket}/runs", "again")
    assert again["run"] == run and again["best_val_map"] == in_bucket["best_val_map"]
    assert again["epochs"] == PARAMS["epochs"] and again["resumes"] == 1
