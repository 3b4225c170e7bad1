"""pipeline.distributed: Ray address resolution, a real local Ray, and the shared-storage check."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.distributed import (SHARED_STORAGE_ENV, check_storage_path, declared_shared, mount_fstype,
                                  resolve_address)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv(SHARED_STORAGE_ENV, raising=False)


def test_address_param_wins_over_env(no_env, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert resolve_address("ray://head:10001") == "ray://head:10001"


@pytest.mark.parametrize("param", [None, "", "  "])
def test_blank_param_falls_back_to_env(no_env, monkeypatch, param):
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    assert resolve_address(param) == "auto"


def test_nothing_set_means_local_ray(no_env):
    assert resolve_address(None) is None and resolve_address("") is None


LOCAL_RAY = """
import json, os, stat, subprocess, sys
import psutil
from pipeline.distributed import init_ray, cluster_nodes
ray = init_ray(None, num_cpus=1)
print('NODES', cluster_nodes(), 'CPU', ray.cluster_resources().get('CPU'))
# Its head's monitor runs a read-only autoscaler (it launches nothing): too much is refused at once.
import time
from ray._private import ray_constants
from ray.experimental.internal_kv import _internal_kv_get
from pipeline.capacity import check_resources, cluster_view
deadline = time.monotonic() + 30
while not _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS) and time.monotonic() < deadline:
    time.sleep(0.5)
assert _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS), "the monitor wrote no status"
assert not cluster_view().autoscaler
try:
    check_resources(4, 1, 0, "train: 4 Ray Train workers", "placement.train.num_workers")
    raise AssertionError("not refused")
except ValueError as e:
    print("REFUSED", e)
assert init_ray('10.255.255.1:1') is ray  # already connected: the address is not used again
ray.get(ray.remote(lambda: 1).remote())  # a worker is up, listening too
me = psutil.Process()
listening = sorted({(p.name(), c.laddr.ip, c.laddr.port) for p in [me, *me.children(recursive=True)]
                    for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN})
token = os.path.join(os.environ["HOME"], ".ray", "auth_token")
gcs = ray.get_runtime_context().gcs_address
# A second driver of this machine without the token (its own HOME, RAY_AUTH_MODE unset) is refused.
env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}
env["HOME"] = os.environ["OTHER_HOME"]
join = "from pipeline.distributed import init_ray; init_ray(%r, timeout_s=20)" % gcs
probe = subprocess.run([sys.executable, "-c", join],
                       env=env, capture_output=True, text=True, timeout=120)
print("RESULT" + json.dumps({"listening": listening, "mode": os.environ.get("RAY_AUTH_MODE"), "gcs": gcs,
                             "token_mode": oct(stat.S_IMODE(os.stat(token).st_mode)),
                             "probe_rc": probe.returncode, "probe_err": probe.stderr[-2000:]}))
ray.shutdown()
"""


def test_local_ray_listens_on_loopback_only_with_token_auth(tmp_path):
    # A subprocess, so that the test process's own Ray state (if any) does not decide the outcome; its own
    # HOME, so the token Ray creates is this test's (and its file mode can be read).
    import json

    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    env.update(HOME=str(tmp_path / "home"), OTHER_HOME=str(tmp_path / "other"))
    out = subprocess.run([sys.executable, "-c", LOCAL_RAY], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "NODES 1 CPU 1.0" in out.stdout
    assert "REFUSED train: 4 Ray Train workers need 4 x (1 CPU) but the Ray cluster has 1 node(s)" in out.stdout
    result = json.loads(out.stdout.split("RESULT", 1)[1])
    names = {name for name, _, _ in result["listening"]}
    assert {"gcs_server", "raylet"} <= names, result["listening"]  # the servers were found: not vacuous
    outside = [s for s in result["listening"] if not s[1].removeprefix("::ffff:").startswith("127.")]
    assert not outside, f"listening beyond loopback: {outside}"
    assert result["gcs"].startswith("127."), result["gcs"]
    assert result["mode"] == "token" and result["token_mode"] == "0o600"
    assert result["probe_rc"] != 0 and "refused this driver" in result["probe_err"], result["probe_err"]


@pytest.mark.parametrize("uri", ["s3://bucket/defr/ray", "gs://bucket/x", "abfs://c@acct/x", "hf://x/y"])
def test_remote_uris_pass_on_many_nodes(no_env, uri):
    assert check_storage_path(uri, n_nodes=8) == uri


def test_any_path_passes_on_one_node(no_env, tmp_path):
    assert check_storage_path(str(tmp_path / "ckpt"), n_nodes=1) == str(tmp_path / "ckpt")
    assert check_storage_path("memory://ckpt", n_nodes=1) == "memory://ckpt"


def test_node_local_path_on_multi_node_cluster_is_a_clear_error(no_env, tmp_path):
    with pytest.raises(ValueError) as err:
        check_storage_path(str(tmp_path / "ckpt"), n_nodes=2, param="train.storage_path")
    message = str(err.value)
    assert "train.storage_path" in message and str(tmp_path / "ckpt") in message
    assert "has 2 nodes" in message and "s3://" in message and SHARED_STORAGE_ENV in message


@pytest.mark.parametrize("path", ["file:///scratch/ckpt", "memory://ckpt"])
def test_file_and_memory_uris_are_node_local(no_env, path):
    with pytest.raises(ValueError, match="storage_path"):
        check_storage_path(path, n_nodes=3)


def test_empty_storage_path_is_an_error(no_env):
    with pytest.raises(ValueError, match="train.storage_path is empty"):
        check_storage_path("", n_nodes=1, param="train.storage_path")


def test_path_under_a_declared_shared_dir_passes(no_env, tmp_path):
    shared = tmp_path / "nfs"
    target = str(shared / "runs" / "ckpt")
    assert check_storage_path(target, n_nodes=4, shared=[str(shared)]) == target
    # A sibling whose name merely starts with the shared dir is not under it.
    with pytest.raises(ValueError):
        check_storage_path(str(tmp_path / "nfs2" / "ckpt"), n_nodes=4, shared=[str(shared)])


def test_shared_dirs_from_env(no_env, monkeypatch, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv(SHARED_STORAGE_ENV, f"{a}{os.pathsep}{b}")
    assert declared_shared("/extra") == [Path("/extra").resolve(), a.resolve(), b.resolve()]
    assert check_storage_path(f"file://{b}/ckpt", n_nodes=2) == f"file://{b}/ckpt"


def test_network_mount_detected_from_mount_table(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("overlay / overlay rw 0 0\n"
                      "10.0.0.2:/export /mnt/team\\040data nfs4 rw 0 0\n"
                      "/dev/sda1 /mnt/team/local ext4 rw 0 0\n")
    assert mount_fstype("/mnt/team data/ckpt", mounts=str(mounts)) == "nfs4"
    assert mount_fstype("/mnt/team/local/ckpt", mounts=str(mounts)) == "ext4"  # longest prefix wins
    assert mount_fstype("/home/x", mounts=str(mounts)) == "overlay"
    assert mount_fstype("/x", mounts=str(tmp_path / "absent")) is None


def test_this_machines_tmp_is_not_shared(no_env, tmp_path):
    fstype = mount_fstype(tmp_path)
    if fstype and fstype.startswith("nfs"):
        pytest.skip(f"{tmp_path} is on {fstype} here")
    with pytest.raises(ValueError, match="node-local"):
        check_storage_path(str(tmp_path / "not" / "yet" / "created"), n_nodes=2)


# --- The preflight on fixed and autoscaling clusters (the cluster's view stubbed; the real autoscaler in
# --- tests/integration/test_autoscaling.py) ---------------------------------------------------------------

from pipeline import capacity  # noqa: E402
from pipeline.capacity import ClusterView, NodeType, ScaleUpTimeout, check_resources, scale_up_plan  # noqa: E402

GPU1, GPU8, CPU16 = NodeType("gpu", 8, 1, 4), NodeType("gpu8", 96, 8, 1), NodeType("cpu", 16, 0, None)


def cold(*types: NodeType, nodes=((8.0, 0.0),), more_workers=None) -> ClusterView:
    """A cluster whose head is up and whose autoscaler can add ``types``."""
    return ClusterView(nodes=list(nodes), node_types=list(types), autoscaler=True, types_known=True,
                       more_workers=more_workers)


def test_plan_uses_the_nodes_up_first_then_the_smallest_type_that_holds_the_rest():
    assert scale_up_plan(1, 1, 0, cold(GPU1)) == (1, {})  # fits on the head
    assert scale_up_plan(1, 1, 1, cold(GPU1, GPU8)) == (1, {"gpu": 1})
    assert scale_up_plan(8, 1, 1, cold(GPU1, GPU8)) == (8, {"gpu8": 1})
    assert scale_up_plan(12, 1, 1, cold(GPU1, GPU8)) == (12, {"gpu8": 1, "gpu": 4})
    assert scale_up_plan(13, 1, 1, cold(GPU1, GPU8)) == (12, {"gpu8": 1, "gpu": 4})  # no more nodes to add
    assert scale_up_plan(12, 1, 1, cold(GPU1, GPU8, more_workers=2)) == (9, {"gpu8": 1, "gpu": 1})
    # CPU work does not boot GPU nodes when a CPU type exists; with none it may.
    assert scale_up_plan(40, 2, 0, cold(GPU8, CPU16)) == (40, {"cpu": 5})  # 4 on the head, 8 a node
    assert scale_up_plan(6, 2, 0, cold(GPU1)) == (6, {"gpu": 1})


def test_reachable_gpus_counts_what_the_autoscaler_can_add():
    assert cold(GPU1, GPU8).reachable_gpus() == 12
    assert cold(GPU1, GPU8, more_workers=2).reachable_gpus() == 9
    assert cold(NodeType("any", 8, 1, None)).reachable_gpus() is None
    assert ClusterView(nodes=[(8, 2)]).reachable_gpus() == 2


@pytest.fixture
def view_seq(monkeypatch):
    """Stubs the cluster's view (one ClusterView per call, the last repeated) and the autoscaler request."""
    requests, views = [], []
    monkeypatch.delenv("DEFR_SKIP_RESOURCE_CHECK", raising=False)
    monkeypatch.setattr(capacity, "cluster_view", lambda: views.pop(0) if len(views) > 1 else views[0])
    monkeypatch.setattr(capacity, "_alive_node_ids", lambda: set())
    monkeypatch.setattr(capacity, "POLL_S", 0.0)
    monkeypatch.setattr(capacity, "PROGRESS_EVERY_S", 0.0)
    import ray.autoscaler.sdk

    monkeypatch.setattr(ray.autoscaler.sdk, "request_resources", lambda bundles: requests.append(bundles))
    return views, requests


def test_a_fixed_cluster_refuses_what_it_cannot_hold_at_once(view_seq):
    views, requests = view_seq
    views.append(ClusterView(nodes=[(2.0, 0.0)]))
    with pytest.raises(ValueError) as err:
        check_resources(4, 1, 0, "train: 4 Ray Train workers", "placement.train.num_workers")
    assert str(err.value).startswith("train: 4 Ray Train workers need 4 x (1 CPU) but the Ray cluster has 1 "
                                     "node(s) with 2 CPU and 0 GPU in all: at most 2 fit. Lower "
                                     "placement.train.num_workers")
    assert requests == []


def test_an_autoscaling_cluster_refuses_only_what_no_node_type_can_hold(view_seq):
    views, requests = view_seq
    views.append(cold(GPU1))
    with pytest.raises(ValueError) as err:
        check_resources(5, 1, 1, "train: 5 Ray Train workers", "placement.train.num_workers / use_gpu")
    message = str(err.value)
    assert "need 5 x (1 CPU, 1 GPU) but the Ray cluster has 1 node(s)" in message
    assert "its autoscaler can add 4 x gpu (8 CPU, 1 GPU): at most 4 fit" in message
    with pytest.raises(ValueError, match="at most 0 fit"):  # 16 CPUs per worker: no type that big
        check_resources(1, 16, 1, "train: 1 Ray Train workers", "placement.train.cpus_per_worker")
    assert requests == []


def test_an_autoscaling_cluster_waits_for_its_nodes_saying_so(view_seq, caplog):
    views, requests = view_seq
    up = ClusterView(nodes=[(8.0, 0.0), (8.0, 1.0), (8.0, 1.0)], autoscaler=True, types_known=True)
    views += [cold(GPU1), cold(GPU1), ClusterView(nodes=[(8.0, 0.0)], node_types=[GPU1], autoscaler=True,
                                                  types_known=True, pending={"gpu": 2}), up]
    caplog.set_level("INFO", logger="pipeline.capacity")
    check_resources(2, 1, 1, "train: 2 Ray Train workers", "placement.train.num_workers", timeout_s=30)
    assert requests == [[{"CPU": 1, "GPU": 1}] * 2, []]  # asked the autoscaler, then withdrew the request
    text = caplog.text
    assert "the cluster can hold them once its autoscaler adds 2 GPU node(s) (node type gpu)" in text
    assert "waiting for 2 GPU node(s): 0 of 2 up, 2 pending (node type gpu)" in text
    assert "the nodes are up after" in text


def test_the_wait_ends_at_the_timeout_with_what_it_waited_for(view_seq):
    views, requests = view_seq
    views.append(cold(GPU1))
    with pytest.raises(ScaleUpTimeout) as err:
        check_resources(1, 1, 1, "train: 1 Ray Train workers", "placement.train.num_workers", timeout_s=0)
    assert "gave up after 0 s waiting for 1 GPU node(s): 0 of 1 up, 0 pending (node type gpu)" in str(err.value)
    assert capacity.SCALE_UP_TIMEOUT_ENV in str(err.value) and requests[-1] == []


def test_an_autoscaler_whose_node_types_are_unknown_is_waited_for_not_refused(view_seq):
    views, requests = view_seq
    views.append(ClusterView(nodes=[(8.0, 0.0)], autoscaler=True))
    with pytest.raises(ScaleUpTimeout, match="node type unknown"):
        check_resources(1, 1, 1, "train: 1 Ray Train workers", "placement.train.num_workers", timeout_s=0)


def test_skip_env_still_skips(view_seq, monkeypatch):
    views, _ = view_seq
    views.append(ClusterView(nodes=[(1.0, 0.0)]))
    monkeypatch.setenv("DEFR_SKIP_RESOURCE_CHECK", "1")
    check_resources(64, 1, 1, "train: 64 Ray Train workers", "placement.train.num_workers")


def test_node_types_come_from_the_autoscaler_config_file(monkeypatch, tmp_path):
    monkeypatch.setenv(capacity.AUTOSCALING_CONFIG_ENV, str(ROOT / "cluster" / "gcp.yaml"))
    types, global_max = capacity._declared_node_types()
    assert global_max == 4
    assert types == {"ray_head_cpu": (8.0, 0.0, 4, True), "ray_worker_gpu": (8.0, 1.0, 4, False),
                     "ray_worker_gpu8": (96.0, 8.0, 1, False)}
    # A worker type whose size the cloud provider fills in: what can be added is not known here.
    bare = tmp_path / "bare.yaml"
    bare.write_text("head_node_type: h\navailable_node_types:\n  h: {resources: {}}\n  w: {resources: {}}\n")
    monkeypatch.setenv(capacity.AUTOSCALING_CONFIG_ENV, str(bare))
    assert capacity._declared_node_types() is None
    monkeypatch.setenv(capacity.AUTOSCALING_CONFIG_ENV, str(tmp_path / "absent.yaml"))
    with pytest.raises(ValueError, match="absent.yaml: no such file"):
        capacity._declared_node_types()


def test_pool_asks_for_gpu_actors_when_the_cluster_can_add_gpus():
    from pipeline.inference.engine import pool_size

    size, gpu, why = pool_size(cold(GPU1), "auto", 2, 100)
    assert (size, gpu) == (4, True) and "0 GPU(s) up, 4 more the autoscaler can add" in why
    assert pool_size(cold(GPU1), "cuda", 2, 3)[:2] == (3, True)  # never more actors than batches
    assert pool_size(cold(NodeType("any", 8, 1, None)), "auto", 2, 100)[:2] == (2, True)  # no limit: actors
    assert pool_size(cold(CPU16), "auto", 2, 100)[:2] == (2, False)
    assert pool_size(cold(GPU1), "cpu", 2, 100)[:2] == (2, False)
    assert pool_size(ClusterView(nodes=[(8, 2)]), "auto", 5, 100)[:2] == (2, True)  # fixed cluster: as before
    # Node types not visible: auto stays on what is up, cuda asks for one GPU and lets the autoscaler decide.
    unknown = ClusterView(nodes=[(8, 0)], autoscaler=True)
    assert pool_size(unknown, "auto", 2, 100)[:2] == (2, False)
    assert pool_size(unknown, "cuda", 2, 100)[:2] == (1, True)
    with pytest.raises(ValueError, match="cuda but the Ray cluster has no GPU and its autoscaler can add none"):
        pool_size(cold(CPU16), "cuda", 2, 100)
    with pytest.raises(ValueError, match="placement device is cuda but the Ray cluster has no GPU$"):
        pool_size(ClusterView(nodes=[(8, 0)]), "cuda", 2, 100)
