"""Stages on a cluster that scales up from zero: a REAL local Ray head whose autoscaler runs Ray's fake
multi-node provider (Ray's own test facility: it "launches" a node by starting another raylet on this
machine), with a GPU node type at zero nodes (one at most). Fake GPUs are resource counts; the work that
lands on them runs on the CPU.

One driver (a subprocess, with the cluster's token, as `dvc repro` on a cluster runs a stage) does what a
stage does on a cold cluster: a request no node type can hold is refused at once; the inference pool's
sizing sees the GPU the autoscaler can add (``device: auto`` gives GPU actors, not CPU ones); the preflight
waits for the GPU node with progress lines, and a GPU task then runs on the new node; the pool then runs
on GPU actors there. Only the processes this test started are stopped (by process group), never another
Ray of this machine (no `ray stop`, which ``ray.cluster_utils.AutoscalingCluster`` would run). Token
authentication stays on.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.capacity import AUTOSCALING_CONFIG_ENV
from pipeline.distributed import LocalHead, _free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.slow]

def fake_cluster_config(gcs_port: int) -> dict:
    """An autoscaler config as `ray up` gives one, for Ray's fake multi-node provider: a 1-CPU head and a
    GPU worker type at zero nodes (at most one)."""
    return {
        "cluster_name": "defr-autoscaling-test", "max_workers": 1,
        # The provider starts its nodes against this GCS (default: this machine's IP, port 6379).
        "provider": {"type": "fake_multinode", "gcs_address": f"127.0.0.1:{gcs_port}", "disable_node_updaters": True,
                     "disable_launch_config_check": True},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 1}, "node_config": {}, "max_workers": 0},
            "gpu_worker": {"resources": {"CPU": 1, "GPU": 1, "object_store_memory": 80 * 1024 ** 2},
                           "node_config": {}, "min_workers": 0, "max_workers": 1}},
        "head_node_type": "ray.head.default", "auth": {}, "upscaling_speed": 1.0,
        # Long enough that the GPU node outlives the gap between the preflight and the pool.
        "idle_timeout_minutes": 5, "docker": {}, "initialization_commands": [], "setup_commands": [],
        "head_setup_commands": [], "worker_setup_commands": [], "head_start_ray_commands": [],
        "worker_start_ray_commands": [], "file_mounts": {}, "cluster_synced_files": [],
        "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": []}


DRIVER = r"""
import json, logging, os, sys, time
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="LOG %(name)s: %(message)s")
import pyarrow as pa
import pipeline.capacity as c
import pipeline.distributed as d
from pipeline.inference.engine import pool_size, run_predictor
from pipeline.placement import Placement

c.PROGRESS_EVERY_S = 2.0  # the test's node comes in seconds, not minutes
out = {}
ray = d.init_ray(None, timeout_s=60)
head = ray.get_runtime_context().get_node_id()
view = c.cluster_view()
out["cold"] = {"nodes": view.nodes, "autoscaler": view.autoscaler, "types_known": view.types_known,
               "types": [t.__dict__ for t in view.node_types], "reachable_gpus": view.reachable_gpus()}
out["pool_cold"] = pool_size(view, "auto", 3, 10)

t = time.monotonic()
try:
    c.check_resources(2, 1, 1, "train: 2 Ray Train workers", "placement.train.num_workers / use_gpu")
    out["refused"] = None
except ValueError as e:
    out["refused"] = str(e)
out["refused_s"] = time.monotonic() - t

t = time.monotonic()
c.check_resources(1, 1, 1, "train: 1 Ray Train workers", "placement.train.num_workers / use_gpu", timeout_s=120)
out["waited_s"] = time.monotonic() - t

@ray.remote(num_gpus=1, num_cpus=1)
def on_gpu():
    return ray.get_runtime_context().get_node_id(), ray.get_gpu_ids()

node, gpu_ids = ray.get(on_gpu.remote(), timeout=60)
out["task"] = {"on_head": node == head, "gpu_ids": [str(g) for g in gpu_ids]}

class Where:
    schema = pa.schema([("node", pa.string()), ("device", pa.string())])
    def __init__(self, device):
        self.device = device
    def __call__(self, items, rows):
        node = ray.get_runtime_context().get_node_id()
        return pa.table({"node": [node] * len(items), "device": [self.device] * len(items)})

images = pa.table({"image_id": pa.array(range(len(sys.argv) - 1), pa.int64()), "uri": sys.argv[1:]})
run = run_predictor(images, Where, {}, Placement(batch_size=2, actors=3, device="auto"), ray=True, desc="detect")
out["pool"] = {"info": run.info, "rows": run.table.num_rows, "devices": sorted(set(run.table["device"].to_pylist())),
               "on_head": sorted({n == head for n in run.table["node"].to_pylist()})}
# A file, not stdout: Ray's log lines from other threads may land between any two writes there.
with open(os.environ["RESULT_FILE"], "w") as f:
    json.dump(out, f)
"""


@pytest.fixture(scope="module")
def cold_cluster_run(tmp_path_factory):
    """Starts the fake autoscaling cluster, runs the driver on it, returns (result, stdout)."""
    from PIL import Image

    work = tmp_path_factory.mktemp("autoscaling")
    config = work / "ray_bootstrap_config.yaml"
    port = _free_port()
    config.write_text(yaml.safe_dump(fake_cluster_config(port)))
    images = []
    for i in range(4):
        images.append(str(work / f"im{i}.png"))
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(images[-1])
    head = LocalHead(work / "head", num_cpus=1, object_store_mb=100, autoscaling_config=config,
                     env={"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}, port=port)
    with head:
        drop = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "DEFR_SKIP_RESOURCE_CHECK",
                "DEFR_SCALE_UP_TIMEOUT_S")
        env = {k: v for k, v in os.environ.items() if k not in drop}
        env.update(head.env, RAY_ADDRESS=head.address, PYTHONPATH=str(ROOT), RESULT_FILE=str(work / "result.json"),
                   **{AUTOSCALING_CONFIG_ENV: str(config)})
        env.pop("RAY_FAKE_CLUSTER", None)
        out = subprocess.run([sys.executable, "-c", DRIVER, *images], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=300)
    assert out.returncode == 0 and (work / "result.json").exists(), out.stdout[-4000:] + out.stderr[-4000:]
    return json.loads((work / "result.json").read_text()), out.stdout


def test_the_cold_cluster_has_no_gpu_but_its_autoscaler_can_add_one(cold_cluster_run):
    result, _ = cold_cluster_run
    cold = result["cold"]
    assert cold["autoscaler"] and cold["types_known"]
    assert sum(g for _, g in cold["nodes"]) == 0
    assert cold["types"] == [{"name": "gpu_worker", "cpus": 1.0, "gpus": 1.0, "more": 1}]
    assert cold["reachable_gpus"] == 1


def test_a_request_no_node_type_can_hold_is_refused_at_once(cold_cluster_run):
    result, _ = cold_cluster_run
    assert result["refused"] and result["refused_s"] < 10, result
    assert "train: 2 Ray Train workers need 2 x (1 CPU, 1 GPU) but the Ray cluster has 1 node(s)" in result["refused"]
    assert "1 x gpu_worker (1 CPU, 1 GPU)" in result["refused"] and "at most 1 fit" in result["refused"]


def test_the_preflight_waits_for_the_gpu_node_saying_so_and_the_gpu_work_runs_there(cold_cluster_run):
    result, stdout = cold_cluster_run
    assert result["task"] == {"on_head": False, "gpu_ids": ["0"]}, result["task"]
    assert result["waited_s"] > 1, result  # it did wait: the node was not up
    assert "the cluster can hold them once its autoscaler adds 1 GPU node(s) (node type gpu_worker)" in stdout
    assert "the nodes are up after" in stdout
    assert "waiting for 1 GPU node(s): 0 of 1 up, " in stdout and "pending (node type gpu_worker) (" in stdout


def test_the_pool_asks_for_gpu_actors_on_a_cold_cluster_that_can_add_gpus(cold_cluster_run):
    result, stdout = cold_cluster_run
    size, gpu, why = result["pool_cold"]
    assert (size, gpu) == (1, True), why
    assert "0 GPU(s) up, 1 more the autoscaler can add" in why
    assert result["pool"]["info"]["device"] == "cuda" and result["pool"]["info"]["actors"] == 1
    assert result["pool"]["rows"] == 4 and result["pool"]["devices"] == ["cuda"]
    assert result["pool"]["on_head"] == [False]
    # By then the preflight above had brought the node up: the pool says what it found.
    assert "detect: 1 GPU actor(s): device auto: 1 GPU(s) up, 0 more the autoscaler can add" in stdout
