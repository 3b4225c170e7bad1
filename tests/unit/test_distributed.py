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
