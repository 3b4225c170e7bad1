"""Ray Train checkpoints in a bucket: the train stage with ``storage_path: s3://bucket/runs`` on the loopback
S3 server (tests/s3_server.py), one worker SIGKILLed mid-run, resumed from the checkpoint in the bucket,
and the exported model compared with the same run (same kill) on local storage.

Tiny on purpose (defr-tiny-vit at 48 px, one worker, 2 epochs): the point is where checkpoints go and
come back from, not learning.
"""
from __future__ import annotations

import json

import pytest
import yaml
from safetensors.torch import load_file

from stages import train
from tests.integration.test_train_stage import PLACE, TRAIN, write_text_embeddings
from tests.s3_server import s3, s3_server  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARAMS = TRAIN | {"epochs": 2}
PLACEMENT = PLACE | {"num_workers": 1, "max_failures": 2, "run_name": "s3test"}


def params(storage_path: str) -> str:
    return yaml.safe_dump({"train": PARAMS, "placement": {"train": PLACEMENT | {"storage_path": storage_path}}})


def fresh_ray() -> None:
    """Stops a Ray that this test process started earlier, so the next local Ray (and its workers)
    starts with the AWS_* variables the fixture exported. The three runs of the test share that Ray (the
    stage joins a Ray its process already has): each run is a new Ray Train run either way."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


def run_train(tmp_path, prepared, emb, storage_path: str, monkeypatch, tag: str) -> dict:
    work = tmp_path / tag
    work.mkdir()
    (work / "params.yaml").write_text(params(storage_path))
    marker = work / "killed.txt"
    monkeypatch.setenv("DEFR_FAULT_INJECTION", f"0:1:{marker}")  # SIGKILL the worker in epoch 1, once
    metrics = train.main(["--params", str(work / "params.yaml"), "--images", str(prepared / "images.parquet"),
                          "--text-embeddings", str(emb), "--model-out", str(work / "model"),
                          "--history", str(work / "history.csv"), "--metrics", str(work / "metrics.json")])
    assert marker.exists(), f"{tag}: the fault hook never fired"
    assert metrics["resumes"] == 1 and metrics["epochs"] == PARAMS["epochs"], metrics
    return metrics | {"dir": work}


@pytest.fixture
def own_ray():
    fresh_ray()
    yield
    fresh_ray()


@pytest.mark.timeout(900)
def test_checkpoints_in_a_bucket_survive_a_killed_worker_and_match_local_storage(
        s3, prepared_demo, tmp_path, monkeypatch, own_ray):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    emb = write_text_embeddings(prepared_demo, tmp_path / "text_embeddings.parquet")
    bucket = s3.new_bucket()

    in_bucket = run_train(tmp_path, prepared_demo, emb, f"s3://{bucket}/runs", monkeypatch, "s3")
    run = in_bucket["run"]
    keys = s3.keys(bucket, f"runs/{run}/")
    checkpoints = sorted({k.split("/")[2] for k in keys if k.split("/")[2].startswith("checkpoint_")})
    assert checkpoints, f"no checkpoint in s3://{bucket}/runs/{run}: {keys[:20]}"
    assert any(k.endswith("/model/model.safetensors") for k in keys)
    assert not (tmp_path / "s3" / "runs").exists()

    local = run_train(tmp_path, prepared_demo, emb, str(tmp_path / "local-runs"), monkeypatch, "local")
    assert local["run"] == run and (tmp_path / "local-runs" / run).is_dir()

    # Same data, seed and kill: the resumed run in the bucket exports the local run's best epoch, exactly.
    assert (in_bucket["best_epoch"], in_bucket["best_val_map"]) == (local["best_epoch"], local["best_val_map"])
    got = load_file(str(in_bucket["dir"] / "model" / "model.safetensors"))
    want = load_file(str(local["dir"] / "model" / "model.safetensors"))
    assert got.keys() == want.keys()
    for name in want:
        assert got[name].equal(want[name]), name
    assert json.loads((in_bucket["dir"] / "model" / "config.json").read_text()) == \
        json.loads((local["dir"] / "model" / "config.json").read_text())

    # A re-run with the same params resumes the finished run from the bucket: nothing is trained again.
    monkeypatch.delenv("DEFR_FAULT_INJECTION")
    again_dir = tmp_path / "again"
    again_dir.mkdir()
    (again_dir / "params.yaml").write_text(params(f"s3://{bucket}/runs"))
    again = train.main(["--params", str(again_dir / "params.yaml"), "--images",
                        str(prepared_demo / "images.parquet"), "--text-embeddings", str(emb),
                        "--model-out", str(again_dir / "model"), "--history", str(again_dir / "h.csv"),
                        "--metrics", str(again_dir / "m.json")])
    assert again["run"] == run and again["best_val_map"] == in_bucket["best_val_map"]
