"""The one way every stage connects to Ray: a cluster address, ``RAY_ADDRESS``, or a local Ray."""
from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def init_ray(address: str | None = None, num_cpus: int | None = None, **kwargs):
    """Connects to Ray once per process and returns the ``ray`` module.

    Args:
        address: cluster address (``ray://host:10001`` or ``host:6379`` or ``auto``); ``None`` or ``""``
            falls back to ``RAY_ADDRESS``, and to a new local Ray when that is unset too.
        num_cpus: CPUs for a local Ray (ignored when joining a cluster).
    """
    import ray

    if ray.is_initialized():
        return ray
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        log.info("connecting to the Ray cluster at %s", address)
        ray.init(address=address, log_to_driver=True, **kwargs)
    else:
        log.info("no Ray address given: starting a local Ray")
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True, **kwargs)
    return ray


def cluster_nodes() -> int:
    """Number of alive nodes in the connected cluster."""
    import ray

    return sum(1 for n in ray.nodes() if n.get("Alive"))
