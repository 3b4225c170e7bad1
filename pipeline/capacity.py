"""Whether the connected Ray cluster can hold a stage's work, now or once its autoscaler has added nodes.

Before a stage hands work to Ray it calls ``check_resources``: a request no node can hold is refused at
once; on an autoscaling cluster (GPU nodes at zero until asked for) the nodes the autoscaler can add count
(``cluster_view``: the node types and their limits, from Ray's cluster config in the GCS or the
autoscaler's config file), and the stage asks for them and waits, saying what for, instead of refusing.
The inference pools size themselves from the same view (``pipeline.inference.engine.pool_size``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from pathlib import Path
from typing import Iterable

log = logging.getLogger(__name__)


SKIP_RESOURCE_CHECK_ENV = "DEFR_SKIP_RESOURCE_CHECK"
SCALE_UP_TIMEOUT_ENV = "DEFR_SCALE_UP_TIMEOUT_S"  # how long a stage waits for the autoscaler's nodes
DEFAULT_SCALE_UP_TIMEOUT_S = 900.0  # cloud GPU nodes take 3-10 min to boot and install
# The autoscaler's own config (`available_node_types`): where `ray up` leaves it on the head, where `ray job
# submit` runs the stage; DEFR_AUTOSCALING_CONFIG names another copy (e.g. a driver off the head).
AUTOSCALING_CONFIG_ENV = "DEFR_AUTOSCALING_CONFIG"
BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"
PROGRESS_EVERY_S = 15.0
POLL_S = 1.0


class ScaleUpTimeout(RuntimeError):
    """The autoscaler did not bring up the nodes a stage needs within DEFR_SCALE_UP_TIMEOUT_S."""


@dataclasses.dataclass(frozen=True)
class NodeType:
    """A kind of node the autoscaler can add: its resources per node and how many more it may add.

    Attributes:
        name: the node type (``available_node_types`` key, KubeRay worker group).
        cpus, gpus: per node.
        more: nodes of this type it may still add (None: no limit).
    """
    name: str
    cpus: float
    gpus: float
    more: int | None


@dataclasses.dataclass
class ClusterView:
    """What the connected cluster holds now and what its autoscaler can add.

    Attributes:
        nodes: (CPU, GPU) totals of every alive node.
        node_types: the node types the autoscaler can add (empty: none, or not known here).
        autoscaler: whether an autoscaler runs (its status is in the GCS).
        types_known: whether ``node_types`` is the autoscaler's full list (from its config).
        pending: node type -> nodes requested or booting, from the autoscaler's status.
        failures: the autoscaler's recent launch failures (for a timeout message).
        more_workers: how many worker nodes the cluster may still add in all (None: no limit).
    """
    nodes: list[tuple[float, float]]
    node_types: list[NodeType] = dataclasses.field(default_factory=list)
    autoscaler: bool = False
    types_known: bool = False
    pending: dict[str, int] = dataclasses.field(default_factory=dict)
    failures: list[str] = dataclasses.field(default_factory=list)
    more_workers: int | None = None

    def reachable_gpus(self) -> float | None:
        """GPUs the cluster has now plus those its autoscaler can add (None: no limit)."""
        gpus, budget = sum(g for _, g in self.nodes), self.more_workers
        for t in sorted(self.node_types, key=lambda t: -t.gpus):
            if not t.gpus:
                continue
            if t.more is None and budget is None:
                return None
            n = min(x for x in (t.more, budget) if x is not None)
            gpus += t.gpus * n
            budget = None if budget is None else budget - n
        return gpus


def _first_fit(bundles: int, cpus: float, gpus: float, nodes: Iterable[tuple[float, float]]) -> int:
    """How many of ``bundles`` x {cpus, gpus} fit on nodes of these (CPU, GPU) totals, one node each."""
    placed = 0
    for c, g in sorted(nodes, reverse=True):
        while placed < bundles and c >= cpus - 1e-9 and g >= gpus - 1e-9:
            c, g, placed = c - cpus, g - gpus, placed + 1
    return placed


def _per_node(cpus: float, gpus: float, node_type: NodeType) -> int:
    """How many bundles of {cpus, gpus} one node of this type holds."""
    counts = [int((have + 1e-9) // want) for have, want in ((node_type.cpus, cpus), (node_type.gpus, gpus)) if want > 0]
    return min(counts) if counts else 10 ** 6


def scale_up_plan(bundles: int, cpus: float, gpus: float, view: ClusterView) -> tuple[int, dict[str, int]]:
    """The most bundles the cluster can hold once scaled up, and the nodes per type it would add for them.

    Bundles go to the nodes that are up first, then to new nodes, one at a time: for CPU-only bundles
    types without GPUs first; the smallest type that holds all the bundles left, else the largest.
    (The autoscaler makes its own choice; this one decides feasibility and names the types to wait for.)
    """
    placed = _first_fit(bundles, cpus, gpus, view.nodes)
    per = {t.name: _per_node(cpus, gpus, t) for t in view.node_types}
    left = {t.name: t.more for t in view.node_types}
    plan: dict[str, int] = {}
    budget = view.more_workers
    while placed < bundles and (budget is None or budget > 0):
        fitting = [t for t in view.node_types if per[t.name] and (left[t.name] is None or left[t.name] > 0)]
        fitting = [t for t in fitting if gpus or not t.gpus] or fitting
        if not fitting:
            break
        whole = [t for t in fitting if per[t.name] >= bundles - placed]
        pick = (min(whole, key=lambda t: per[t.name]) if whole else max(fitting, key=lambda t: per[t.name])).name
        placed += per[pick]
        plan[pick] = plan.get(pick, 0) + 1
        left[pick] = None if left[pick] is None else left[pick] - 1
        budget = None if budget is None else budget - 1
    return min(placed, bundles), plan


def check_resources(bundles: int, cpus: float, gpus: float, what: str, params: str,
                    timeout_s: float | None = None) -> None:
    """Fails at once when the connected cluster can never hold ``bundles`` x {cpus, gpus}; waits for the
    autoscaler when it can hold them only once it has added nodes.

    Each bundle must fit on one node (a worker or an actor does not span nodes); the message gives the
    numbers. On an autoscaling cluster the nodes it can add count (its node types up to their
    ``max_workers``, from Ray's cluster config in the GCS or the autoscaler's config file): the check asks
    the autoscaler for them (``ray.autoscaler.sdk.request_resources``) and waits, saying every 15 s what it
    waits for, until they are up or ``timeout_s`` has passed. ``DEFR_SKIP_RESOURCE_CHECK=1`` skips it all.

    Args:
        bundles: workers or actors wanted; cpus, gpus: each one's share.
        what: e.g. "train: 4 Ray Train workers"; params: the keys that ask for it (named in the error).
        timeout_s: the longest wait for new nodes (default: ``DEFR_SCALE_UP_TIMEOUT_S`` or 900 s).

    Raises:
        ValueError: no node the cluster has or can add holds the request.
        ScaleUpTimeout: the autoscaler did not bring the nodes up in time.
    """
    if os.environ.get(SKIP_RESOURCE_CHECK_ENV) == "1":
        return
    view = cluster_view()
    need = f"{bundles} x ({cpus:g} CPU" + (f", {gpus:g} GPU" if gpus else "") + ")"
    if _first_fit(bundles, cpus, gpus, view.nodes) >= bundles:
        return
    possible, plan = scale_up_plan(bundles, cpus, gpus, view)
    if possible < bundles and (view.types_known or not view.autoscaler):
        total_cpu, total_gpu = sum(c for c, _ in view.nodes), sum(g for _, g in view.nodes)
        have = f"{len(view.nodes)} node(s) with {total_cpu:g} CPU and {total_gpu:g} GPU in all"
        can_add = ("; its autoscaler can add " + ", ".join(
            f"{'any number' if t.more is None else t.more} x {t.name} ({t.cpus:g} CPU, {t.gpus:g} GPU)"
            for t in view.node_types)) if view.node_types else ""
        raise ValueError(f"{what} need {need} but the Ray cluster has {have}{can_add}: at most {possible} fit. "
                         f"Lower {params}, or connect to a larger cluster (placement.ray_address / RAY_ADDRESS)")
    timeout_s = float(timeout_s if timeout_s is not None
                      else os.environ.get(SCALE_UP_TIMEOUT_ENV) or DEFAULT_SCALE_UP_TIMEOUT_S)
    _wait_for_nodes(bundles, cpus, gpus, what, need, plan, timeout_s)


def _wait_for_nodes(bundles: int, cpus: float, gpus: float, what: str, need: str, plan: dict[str, int],
                    timeout_s: float) -> None:
    """Asks the autoscaler for the bundles and waits until the alive nodes hold them."""
    import time

    from ray.autoscaler.sdk import request_resources
    from tqdm import tqdm

    kind = "GPU node(s)" if gpus else "node(s)"
    wanted = sum(plan.values())
    types = ", ".join(plan) or "unknown: the autoscaler's node types are not visible from here"
    start = time.monotonic()
    before = _alive_node_ids()
    request_resources(bundles=[{"CPU": cpus, **({"GPU": gpus} if gpus else {})}] * bundles)
    log.info("%s need %s: the cluster can hold them once its autoscaler adds %s %s (node type %s); "
             "waiting up to %.0f s (%s)", what, need, wanted or "more", kind, types, timeout_s, SCALE_UP_TIMEOUT_ENV)
    # A stage's terminal shows its progress bars, its log file the lines: both say what it waits for.
    bar = tqdm(total=wanted or None, desc=f"{what}: waiting for {kind}", unit="node", leave=False)
    try:
        next_note = start + PROGRESS_EVERY_S
        while True:
            view = cluster_view()
            if _first_fit(bundles, cpus, gpus, view.nodes) >= bundles:
                log.info("%s: the nodes are up after %.0f s", what, time.monotonic() - start)
                return
            now = time.monotonic()
            up = len(_alive_node_ids() - before)
            pending = sum(n for t, n in view.pending.items() if not plan or t in plan)
            status = (f"waiting for {wanted or 'more'} {kind}: {up} of {wanted or '?'} up, {pending} pending "
                      f"(node type {types})")
            if now - start >= timeout_s:
                failures = "; the autoscaler's failures: " + "; ".join(view.failures) if view.failures else ""
                raise ScaleUpTimeout(
                    f"{what} need {need}: gave up after {timeout_s:.0f} s {status}{failures}. See `ray status` "
                    f"and the autoscaler's log on the head (monitor.log), or set {SCALE_UP_TIMEOUT_ENV} longer")
            if now >= next_note:
                log.info("%s (%.0f s of %.0f s)", status, now - start, timeout_s)
                bar.n = min(up, wanted) if wanted else up
                bar.set_postfix_str(f"{pending} pending (node type {types})")
                next_note = now + PROGRESS_EVERY_S
            time.sleep(POLL_S)
    finally:
        bar.close()
        # The request would keep the nodes up after the stage; once they are up the stage's own workers
        # hold them (the autoscaler removes idle nodes only after its idle timeout).
        with contextlib.suppress(Exception):
            request_resources(bundles=[])


def _alive_node_ids() -> set[str]:
    import ray

    return {n["NodeID"] for n in ray.nodes() if n.get("Alive")}


def cluster_view() -> ClusterView:
    """The connected cluster's nodes, and what its autoscaler reports and can add (see :class:`ClusterView`)."""
    import ray

    alive = [n for n in ray.nodes() if n.get("Alive")]
    nodes = [(n.get("Resources", {}).get("CPU", 0.0), n.get("Resources", {}).get("GPU", 0.0)) for n in alive]
    view = ClusterView(nodes=nodes)
    status = _autoscaler_status()
    if status is None:
        return view
    view.autoscaler = True
    view.pending, view.failures, type_of = status
    declared = _declared_node_types()
    if declared is None:
        return view
    types, global_max = declared
    view.types_known = True
    counts: dict[str, int] = {}
    for n, (c, g) in zip(alive, nodes):
        # The autoscaler names nodes by IP (clouds) or by node id (its fake provider); else by size.
        name = type_of.get(n["NodeID"]) or type_of.get(n.get("NodeManagerAddress", ""))
        if name not in types:
            name = next((t for t, (tc, tg, _, head) in types.items() if (tc, tg) == (c, g) and not head), None)
        if name:
            counts[name] = counts.get(name, 0) + 1
    workers = sum(n for name, n in counts.items() if not types[name][3])
    for name, (c, g, max_count, head) in types.items():
        if head:
            continue
        more = None if max_count is None else max(0, max_count - counts.get(name, 0))
        view.node_types.append(NodeType(name, c, g, more))
    view.more_workers = None if global_max is None else max(0, global_max - workers)
    return view


def _autoscaler_status() -> tuple[dict[str, int], list[str], dict[str, str]] | None:
    """(pending nodes per type, launch failures, node id -> type) from the autoscaler's last status in the
    GCS; None when no autoscaler runs (a local Ray, a fixed cluster)."""
    import json

    from ray._private import ray_constants
    from ray.experimental.internal_kv import _internal_kv_get

    from ray.autoscaler._private.util import format_readonly_node_type

    # Autoscaler v1 (ray up, KubeRay). Every head runs a monitor that writes this status; without an
    # autoscaling config (a laptop's Ray, `ray start` by hand) its provider is read-only: it launches
    # nothing and names every node "node_<id>".
    raw = _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
    report = (json.loads(raw).get("autoscaler_report") if raw else None) or {}
    mapping = dict(report.get("node_type_mapping") or {})
    if any(t != format_readonly_node_type(n) for n, t in mapping.items()):
        pending = dict(report.get("pending_launches") or {})
        for _, node_type, _ in report.get("pending_nodes") or []:
            pending[node_type] = pending.get(node_type, 0) + 1
        failures = [f"{t} node at {ip} failed" for ip, t in report.get("failed_nodes") or []]
        return pending, failures, mapping
    if mapping:
        return None
    try:  # autoscaler v2 (RAY_enable_autoscaler_v2=1, KubeRay's v2 option)
        import ray
        from ray.autoscaler.v2.sdk import get_cluster_status

        status = get_cluster_status(ray.get_runtime_context().gcs_address)
    except Exception:  # noqa: BLE001 - no v2 state: no autoscaler
        return None
    if str(status.stats.autoscaler_version or "0") == "0":
        return None
    pending: dict[str, int] = {}
    for launch in status.pending_launches:
        pending[launch.ray_node_type_name] = pending.get(launch.ray_node_type_name, 0) + launch.count
    for node in status.pending_nodes:
        pending[node.ray_node_type_name] = pending.get(node.ray_node_type_name, 0) + 1
    failures = [f"{f.ray_node_type_name}: {f.details}" for f in status.failed_launches]
    type_of = {n.node_id: n.ray_node_type_name for n in [*status.active_nodes, *status.idle_nodes]}
    return pending, failures, type_of


def _declared_node_types() -> tuple[dict[str, tuple[float, float, int | None, bool]], int | None] | None:
    """The autoscaler's node types as {name: (CPU, GPU, max nodes or None, is head)} and its limit on
    worker nodes in all (None: none); None when neither the GCS nor a config file here declares them.

    Sources, first found: Ray's cluster config in the GCS (what autoscalers that report it publish), the
    file ``DEFR_AUTOSCALING_CONFIG`` names, ``~/ray_bootstrap_config.yaml`` (the config `ray up` leaves
    on the head). A file with a worker type whose resources it leaves to the cloud provider declares
    nothing (that type's size is unknown here).
    """
    import ray._private.state

    with contextlib.suppress(Exception):  # older GCS: no such key
        config = ray._private.state.state.get_cluster_config()
        if config is not None and config.node_group_configs:
            return {g.name: (float(g.resources.get("CPU", 0)), float(g.resources.get("GPU", 0)),
                             None if g.max_count < 0 else int(g.max_count), False)
                    for g in config.node_group_configs}, None
    path = os.environ.get(AUTOSCALING_CONFIG_ENV) or os.path.expanduser(BOOTSTRAP_CONFIG)
    if not os.path.isfile(path):
        if os.environ.get(AUTOSCALING_CONFIG_ENV):
            raise ValueError(f"{AUTOSCALING_CONFIG_ENV}={path}: no such file (expected the autoscaler's cluster "
                             "config, with available_node_types)")
        return None
    import yaml

    try:
        config = yaml.safe_load(Path(path).read_text())
        node_types = config["available_node_types"]
        head = config.get("head_node_type")
        global_max = config.get("max_workers")
        types = {}
        for name, spec in node_types.items():
            resources = spec.get("resources") or {}
            if "CPU" not in resources and name != head:
                # Left to the cloud provider to fill in: its size is unknown here, so is what can be added.
                log.info("%s: node type %s declares no resources: the nodes the autoscaler can add are "
                         "not known here", path, name)
                return None
            max_count = spec.get("max_workers", global_max)
            types[name] = (float(resources.get("CPU", 0)), float(resources.get("GPU", 0)),
                           None if max_count is None else int(max_count), name == head)
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError, ValueError) as e:
        raise ValueError(f"{path}: not an autoscaler cluster config with available_node_types "
                         f"({type(e).__name__}: {e})") from None
    return types, None if global_max is None else int(global_max)
