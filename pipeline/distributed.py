"""The one way every stage connects to Ray, and the check that Ray Train checkpoints go to shared storage.

A stage calls ``init_ray(params["address"])``: the same code runs on a laptop (a local Ray starts) and on
a cluster (``RAY_ADDRESS`` is set by ``ray job submit``, KubeRay, or the launcher's head setup). A
training stage then calls ``check_storage_path(storage_path, cluster_nodes(), shared)`` before it hands
``storage_path`` to Ray Train: on more than one node every worker writes its checkpoint shards there and
the controller reads them back, so a path that exists on one node only loses checkpoints silently.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable

log = logging.getLogger(__name__)

# os.pathsep-separated local directories that every node of the cluster mounts at the same path
# (an NFS / EFS / Filestore / Lustre mount); Ray Train may checkpoint under them on a multi-node run.
SHARED_STORAGE_ENV = "DEFR_SHARED_STORAGE"

# Filesystem types (as /proc/mounts names them) that are network filesystems, hence seen by every node.
NETWORK_FSTYPES = ("nfs", "nfs4", "cifs", "smb3", "lustre", "gpfs", "beegfs", "glusterfs", "cephfs",
                   "fuse.gcsfuse", "fuse.s3fs", "fuse.mountpoint-s3", "fuse.juicefs", "fuse.sshfs",
                   "9p", "virtiofs")

# fsspec protocols that live in one process or on one disk: never shared between nodes.
LOCAL_PROTOCOLS = ("", "file", "local", "memory")


def resolve_address(address: str | None = None) -> str | None:
    """Returns the Ray address to join: ``address``, else ``RAY_ADDRESS``, else None (start a local Ray).

    Args:
        address: ``ray://host:10001``, ``host:6379`` or ``auto``; ``None`` or blank means not given.
    """
    for candidate in (address, os.environ.get("RAY_ADDRESS")):
        if candidate is not None and str(candidate).strip():
            return str(candidate).strip()
    return None


def init_ray(address: str | None = None, num_cpus: int | None = None, **kwargs):
    """Connects to Ray once per process and returns the ``ray`` module.

    Args:
        address: cluster address (``ray://host:10001`` or ``host:6379`` or ``auto``); ``None`` or ``""``
            falls back to ``RAY_ADDRESS``, and to a new local Ray when that is unset too.
        num_cpus: CPUs for a local Ray (ignored when joining a cluster).
        **kwargs: passed to ``ray.init``.
    """
    import ray

    if ray.is_initialized():
        return ray
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = resolve_address(address)
    if address:
        log.info("connecting to the Ray cluster at %s", address)
        ray.init(address=address, log_to_driver=True, **kwargs)
    else:
        log.info("no Ray address given (param or RAY_ADDRESS): starting a local Ray")
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True, **kwargs)
    return ray


def cluster_nodes() -> int:
    """Number of alive nodes in the connected cluster."""
    import ray

    return sum(1 for n in ray.nodes() if n.get("Alive"))


def declared_shared(shared: Iterable[str] | str | None = None) -> list[Path]:
    """Local directories declared shared by the ``shared`` argument and by ``DEFR_SHARED_STORAGE``."""
    if isinstance(shared, str):
        shared = [shared]
    entries = [str(s) for s in (shared or []) if str(s).strip()]
    entries += [s for s in os.environ.get(SHARED_STORAGE_ENV, "").split(os.pathsep) if s.strip()]
    return [Path(os.path.expanduser(s.removeprefix("file://"))).resolve() for s in entries]


def mount_fstype(path: str | os.PathLike, mounts: str = "/proc/mounts") -> str | None:
    """Filesystem type of the mount that holds ``path`` (longest mount point prefix), None if unknown."""
    try:
        lines = Path(mounts).read_text().splitlines()
    except OSError:
        return None
    path = Path(path).resolve()
    best, fstype = None, None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        # /proc/mounts escapes spaces in mount points as \040.
        point = Path(fields[1].replace("\\040", " "))
        if (path == point or point in path.parents) and (best is None or len(point.parts) > len(best.parts)):
            best, fstype = point, fields[2]
    return fstype


def check_storage_path(storage_path: str, n_nodes: int, shared: Iterable[str] | str | None = None,
                       param: str = "storage_path") -> str:
    """Checks that Ray Train can checkpoint to ``storage_path`` from every node; returns it unchanged.

    Passes: any remote URI (``s3://``, ``gs://``, ``abfs://``, ...); any path on a single-node cluster;
    a local path under a directory declared shared (``shared`` or ``DEFR_SHARED_STORAGE``) or on a
    network filesystem mount (NFS, Lustre, gcsfuse, ...).

    Args:
        storage_path: the checkpoint root given to ``ray.train.RunConfig(storage_path=...)``.
        n_nodes: alive nodes in the cluster (``cluster_nodes()``).
        shared: local directories every node mounts at the same path (e.g. the params list
            ``train.shared_storage``).
        param: the params key named in the error.

    Raises:
        ValueError: ``storage_path`` is empty, or node-local on a multi-node cluster.
    """
    if not str(storage_path or "").strip():
        raise ValueError(f"params.yaml: {param} is empty; expected a directory or a URI such as "
                         "s3://bucket/defr/ray_results")
    storage_path = str(storage_path)
    protocol = storage_path.split("://", 1)[0].lower() if "://" in storage_path else ""
    if protocol not in LOCAL_PROTOCOLS or n_nodes <= 1:
        return storage_path
    if protocol == "memory":
        raise ValueError(f"params.yaml: {param}={storage_path!r} lives in one process's memory; on this "
                         f"{n_nodes}-node cluster Ray Train needs storage every node can reach (s3://, "
                         "gs://, or a shared filesystem mount)")
    local = Path(os.path.expanduser(storage_path.removeprefix("file://"))).resolve()
    roots = declared_shared(shared)
    if any(local == root or root in local.parents for root in roots):
        return storage_path
    fstype = mount_fstype(local if local.exists() else _existing_parent(local))
    if fstype and (fstype in NETWORK_FSTYPES or fstype.startswith("nfs")):
        log.info("%s=%s is on a %s mount: treating it as shared storage", param, storage_path, fstype)
        return storage_path
    raise ValueError(
        f"params.yaml: {param}={storage_path!r} is a node-local path ({fstype or 'unknown'} filesystem) but "
        f"the Ray cluster has {n_nodes} nodes: workers on other nodes would write their checkpoints to their "
        f"own disks. Expected s3://..., gs://..., or a directory every node mounts at the same path, "
        f"declared shared in the params (shared storage list) or in {SHARED_STORAGE_ENV} "
        f"(declared now: {[str(r) for r in roots] or 'none'}).")


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
