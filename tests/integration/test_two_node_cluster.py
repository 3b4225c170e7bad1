"""The train stage on a REAL two-node Ray cluster started on this machine with `ray start`.

A head and a second node join over loopback, each with its own temp dir, ports, one CPU and a custom
resource naming it. `python -m stages.train` runs as a subprocess with ``RAY_ADDRESS`` pointing at the
head, as `dvc repro` runs it on a cluster; each of its two workers needs one CPU, so they can only fit
one per node. The tests check from the GCS actor table that the two workers ran on different nodes
and that the checkpoints are in the shared storage path (the preemption test, which adds a third node and
then drains one with a spot notice mid-epoch), and that a node-local storage path is refused.
The cluster runs with Ray's token authentication on, as the shipped cluster configs do: a driver without
the token is refused, the stage (given the token file) joins.
Only the processes this test started are stopped (by process group), never other Ray instances.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline import schemas
from pipeline.distributed import SHARED_STORAGE_ENV

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# Each test's bound: the module's cluster starts inside the first test, a third node inside the last, each start
# retried on a busy machine (START_ATTEMPTS x START_TIMEOUT_S at worst), plus the training runs.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]



def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


# The cluster's token, as a launcher copies it to every node and to the machine that runs dvc repro.
TOKEN_FILE = Path(tempfile.mkdtemp(prefix="r2n_token_")) / "auth_token"


def ray_env(token: bool = True) -> dict[str, str]:
    """The environment of the nodes and of every driver that joins them: token authentication on, the
    token from TOKEN_FILE (``token=False``: a driver that has no token)."""
    drop = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH",
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    # Ray Train's preemption watcher looks at the nodes being drained every second (default 5 s): the
    # preemption test's notice reaches the workers sooner.
    env.update(RAY_USAGE_STATS_ENABLED="0", PATH=f"{BIN}{os.pathsep}{env['PATH']}",
               RAY_TRAIN_PREEMPTION_POLL_INTERVAL_S="1")
    if token:
        if not TOKEN_FILE.exists():
            TOKEN_FILE.write_text(secrets.token_hex(32))
            TOKEN_FILE.chmod(0o600)
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(TOKEN_FILE))
    else:
        env["HOME"] = str(TOKEN_FILE.parent / "no-token-home")  # no ~/.ray/auth_token either
    return env


# `ray start` waits a fixed 30 s (ray/_private/node.py) for its node to register with the GCS, by polling
# ray._private.services.get_node; on a busy machine that passes ("The current node timed out during startup
# ... the GCS has become overloaded"). This runs Ray's own `ray start` with each of those polls waiting up to
# DEFR_TEST_NODE_REGISTER_S for the node instead: the nodes start for real, they are only given longer.
RAY_START = """
import os, sys, time
import ray._private.services as services
from ray.scripts.scripts import main
poll, wait = services.get_node, float(os.environ["DEFR_TEST_NODE_REGISTER_S"])
def get_node(*args, **kwargs):
    end = time.monotonic() + wait
    while True:
        try:
            return poll(*args, **kwargs)
        except RuntimeError:
            if time.monotonic() > end:
                raise
            time.sleep(1)
services.get_node = get_node
sys.argv[0] = "ray"
sys.exit(main())
"""
NODE_REGISTER_S = 150  # a node's registration, instead of Ray's 30 s
START_ATTEMPTS = 3     # `ray start` of one node, each attempt from scratch with fresh ports
START_TIMEOUT_S = 240  # one attempt, whatever Ray does inside it


class TwoNodeCluster:
    """A head and one more node started with `ray start` on this machine; stop() ends only their processes."""

    def __init__(self, root: Path):
        self.root = root
        self.groups: list[int] = []  # process groups of the `ray start` commands (new sessions)
        self.address = ""

    def _ports(self) -> list[str]:
        nm, om, agent, agent_grpc, metrics, runtime_env, lo = free_ports(7)
        # Each node gets its own worker port window, away from the default 10002-19999 of other Rays here.
        lo = 20000 + (lo % 200) * 200 + (len(self.groups) * 100)
        return [f"--node-manager-port={nm}", f"--object-manager-port={om}",
                f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
                f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={runtime_env}",
                f"--min-worker-port={lo}", f"--max-worker-port={lo + 99}"]

    def _start(self, name: str, make_args) -> list[str]:
        """Runs `ray start` with ``make_args()`` (fresh ports each time) until it succeeds; returns the args.

        Each attempt gives the node NODE_REGISTER_S to register (RAY_START); one that still fails has its
        processes ended and starts again, saying why, up to START_ATTEMPTS times. Its output goes to a file:
        what `ray start` leaves running (raylet, GCS) must hold no pipe of this process."""
        for attempt in range(1, START_ATTEMPTS + 1):
            args = make_args()
            log = self.root / f"ray-start-{name}-{attempt}.log"
            with open(log, "w") as out:
                proc = subprocess.Popen([sys.executable, "-c", RAY_START, "start", *args], start_new_session=True,
                                        env=ray_env() | {"DEFR_TEST_NODE_REGISTER_S": str(NODE_REGISTER_S)},
                                        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
            self.groups.append(proc.pid)  # stop() ends whatever any attempt left
            try:
                if proc.wait(timeout=START_TIMEOUT_S) == 0:
                    return args
                why = f"exit {proc.returncode}"
            except subprocess.TimeoutExpired:
                why = f"no answer in {START_TIMEOUT_S} s"
            self._end_group(proc.pid)
            text = log.read_text(errors="replace")
            reason = next((ln.strip() for ln in reversed(text.splitlines()) if "Error" in ln or "Exception" in ln), why)
            if attempt == START_ATTEMPTS:
                raise RuntimeError(f"ray start of {name} failed {attempt} times; last ({why}):\n{text[-3000:]}")
            message = f"ray start of {name}: attempt {attempt} of {START_ATTEMPTS} failed ({reason}); starting again"
            print(message, file=sys.stderr)
            warnings.warn(message)  # listed in the test summary even when a later attempt succeeds
        raise AssertionError("unreachable")

    def _end_group(self, group: int) -> None:
        """SIGKILLs what one `ray start` left: its process group and their children (Ray workers)."""
        members = []
        for p in psutil.process_iter():
            with contextlib.suppress(ProcessLookupError, psutil.Error):
                if os.getpgid(p.pid) == group:
                    members += [p, *p.children(recursive=True)]
        for p in members:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(members, timeout=10)

    def start(self) -> str:
        def head() -> list[str]:
            gcs, dashboard = free_ports(2)
            self.address = f"127.0.0.1:{gcs}"
            return ["--head", "--node-ip-address=127.0.0.1", f"--port={gcs}", "--num-cpus=1", "--num-gpus=0",
                    '--resources={"defr_node_head": 1}', f"--temp-dir={self.root / 'head'}",
                    "--include-dashboard=false", f"--dashboard-port={dashboard}", "--disable-usage-stats",
                    *self._ports()]

        self._start("the head", head)
        self.add_node("defr_node_2")
        return self.address

    def add_node(self, name: str) -> None:
        """One more node with one CPU and the custom resource ``name``, joined to the head."""
        self._start(name, lambda: [f"--address={self.address}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                                   "--num-gpus=0", json.dumps({name: 1}).join(["--resources=", ""]),
                                   f"--temp-dir={self.root / name}", *self._ports()])

    def processes(self) -> list[psutil.Process]:
        found = {}
        for p in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(p.pid) in self.groups:
                    found[p.pid] = p
                    # Ray workers run in process groups of their own, as children of a raylet.
                    found.update({c.pid: c for c in p.children(recursive=True)})
            except (ProcessLookupError, psutil.Error):
                continue
        return list(found.values())

    def stop(self) -> list[int]:
        """SIGTERM then SIGKILL to every process this cluster started; returns pids still alive (none)."""
        procs = self.processes()
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
            for p in procs:
                try:
                    p.send_signal(sig)
                except psutil.Error:
                    pass
            _, procs = psutil.wait_procs(procs, timeout=wait)
            if not procs:
                break
        return [p.pid for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@pytest.fixture(scope="module")
def cluster():
    root = Path(tempfile.mkdtemp(prefix="r2n_", dir="/tmp"))  # short: Ray's unix socket paths are limited
    c = TwoNodeCluster(root)
    try:
        c.start()
        yield c
    finally:
        left = c.stop()
        import shutil

        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"Ray processes still alive after stop: {left}"


def query_cluster(address: str) -> dict:
    """Nodes (id -> our custom resource name) and Ray Train worker actors, read from the GCS by a client."""
    code = """
import json, ray
ray.init(address=%r, log_to_driver=False)
from ray._private import state
nodes = {n["NodeID"]: sorted(k for k in n["Resources"] if k.startswith("defr_node")) for n in ray.nodes()}
actors = [{"id": a["ActorID"], "cls": a["ActorClassName"], "node": a["Address"]["NodeID"], "state": a["State"]}
          for a in state.actors().values()]
print("RESULT" + json.dumps({"nodes": nodes, "actors": actors}))
""" % address
    out = subprocess.run([sys.executable, "-c", code], env=ray_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.split("RESULT", 1)[1])


def train_params(shared: Path, storage_path: Path) -> dict:
    """The project's train section shrunk to a two-worker CPU run of the tiny model."""
    project = yaml.safe_load((ROOT / "params.yaml").read_text())
    train = dict(project["train"])
    train.update(epochs=1, restart_epochs=1, global_batch=16, min_per_class=0, image_size=64,
                 model="defr-tiny-vit", pretrained="")
    place = dict(project["placement"]["train"])
    place.update(num_workers=2, use_gpu=False, cpus_per_worker=1, micro_batch=8, loader_workers=0, max_failures=0,
                 storage_path=str(storage_path), shared_storage=[str(shared)], run_name="two-node")
    return {"train": train, "placement": {"train": place}}


def text_embeddings(path: Path, dim: int = 32) -> Path:
    import numpy as np

    rng = np.random.default_rng(0)
    emb = rng.standard_normal((600, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    table = pa.table({"hoi": pa.array(range(600), pa.int16()), "prompt": [f"class {i}" for i in range(600)],
                      "embedding": pa.array(emb.tolist(), pa.list_(pa.float32()))})
    pq.write_table(schemas.conform(table, schemas.TEXT_EMBEDDINGS, "text_embeddings"), path)
    return path


def train_command(address: str, params: Path, inputs: dict[str, Path], out: Path, shared: Path):
    """(argv, env) of the train stage joining the cluster at ``address``, as `dvc repro` runs it there."""
    env = ray_env() | {"RAY_ADDRESS": address, SHARED_STORAGE_ENV: str(shared), "DEFR_LOG_DIR": str(out / "logs")}
    args = [sys.executable, "-m", "stages.train", "--params", str(params), "--images", str(inputs["images"]),
            "--text-embeddings", str(inputs["text"]), "--model-out", str(out / "model"),
            "--history", str(out / "history.csv"), "--metrics", str(out / "metrics.json")]
    return args, env


def run_train(address: str, params: Path, inputs: dict[str, Path], out: Path, shared: Path):
    args, env = train_command(address, params, inputs, out, shared)
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture
def train_inputs(prepared_demo, tmp_path) -> dict[str, Path]:
    return {"images": prepared_demo / "images.parquet", "text": text_embeddings(tmp_path / "text.parquet")}


def test_node_local_storage_path_is_refused_on_two_nodes(cluster, train_inputs, tmp_path):
    shared = tmp_path / "shared"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(train_params(shared, tmp_path / "local_ckpt")))
    refused = run_train(cluster.address, params, train_inputs, tmp_path / "out", shared)
    assert refused.returncode != 0, "training ran with a node-local storage_path on a 2-node cluster"
    # The stage's console: the failure's message on stdout, the traceback in its log.
    assert "train.storage_path" in refused.stdout and "2 nodes" in refused.stdout, refused.stdout[-3000:]
    assert not (tmp_path / "local_ckpt").exists() and not (tmp_path / "out" / "model").exists()


def test_a_driver_without_the_token_is_refused_and_one_with_it_joins(cluster):
    code = ("import sys; from pipeline.distributed import init_ray; ray = init_ray(sys.argv[1], timeout_s=30); "
            "print('JOINED', len(ray.nodes()))")
    refused = subprocess.run([sys.executable, "-c", code, cluster.address], cwd=ROOT, env=ray_env(token=False),
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "JOINED" not in refused.stdout
    assert "refused this driver" in refused.stderr and "RAY_AUTH_TOKEN_PATH" in refused.stderr, refused.stderr[-2000:]
    joined = subprocess.run([sys.executable, "-c", code, cluster.address], cwd=ROOT, env=ray_env(),
                            capture_output=True, text=True, timeout=120)
    assert joined.returncode == 0 and "JOINED 2" in joined.stdout, joined.stderr[-2000:]


class Drainer:
    """Sends spot interruption notices to the GCS, as the autoscaler does on a cloud's notice
    (``ray drain-node --reason DRAIN_NODE_REASON_PREEMPTION``), from one process that has imported Ray and
    connected before the first one: a notice takes milliseconds, not the seconds of a new process. A
    second notice for a node moves its deadline (the GCS keeps the latest; Ray Train the earliest)."""

    SCRIPT = """
import sys, time, ray
from ray.core.generated import autoscaler_pb2
gcs = ray._raylet.GcsClient(address=sys.argv[1])
reason = autoscaler_pb2.DrainNodeReason.Value("DRAIN_NODE_REASON_PREEMPTION")
print("ready", flush=True)
for line in sys.stdin:
    node, seconds = line.split()
    accepted, why = gcs.drain_node(node, reason, "spot interruption (test)", int((time.time() + float(seconds)) * 1000))
    print("accepted" if accepted else "refused: " + str(why), flush=True)
"""

    def __init__(self, address: str, log: Path):
        self.log = log  # Ray's own lines: a pipe nobody reads could fill and stop the helper
        with open(log, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-c", self.SCRIPT, address], env=ray_env(), text=True,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
        self._expect("ready")

    def _expect(self, word: str) -> None:
        line = self.proc.stdout.readline().strip()
        if line != word:
            self.proc.kill()
            raise AssertionError(f"drain helper said {line!r}, not {word!r}: {self.log.read_text()[-3000:]}")

    def notice(self, node_id: str, deadline_s: float) -> None:
        """Node ``node_id`` will be reclaimed in ``deadline_s`` seconds."""
        self.proc.stdin.write(f"{node_id} {deadline_s}\n")
        self.proc.stdin.flush()
        self._expect("accepted")

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def wait_for_line(path: Path, text: str, proc: subprocess.Popen, timeout_s: float) -> str:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        log = path.read_text(errors="replace") if path.exists() else ""
        if text in log:
            return log
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    raise AssertionError(f"no {text!r} in {path} (stage exit {proc.poll()}):\n{log[-3000:]}")


# Last in this module: it drains (and so ends) node 2 of the shared cluster.
def test_a_preempted_node_gets_a_checkpoint_on_notice_and_the_epoch_resumes_on_the_nodes_left(
        cluster, train_inputs, tmp_path):
    """The train stage spreads its two workers over two nodes and checkpoints to the shared storage path;
    a spot node's interruption notice while they train: the workers save a checkpoint at once, mid-epoch;
    at the deadline (moved to "now" once that checkpoint is in) Ray Train restarts them on the nodes left
    (a third node stands in for the autoscaler's replacement) and the epoch goes on from that step, not
    from its start."""
    cluster.add_node("defr_node_3")
    shared = tmp_path / "shared"
    p = train_params(shared, shared / "ray_results")
    # one epoch (over-sampled to ~6,600 images: 830 batches of 4 per worker) much longer than the few seconds
    # from the notice to the restart (2 s here): 25 s on the fastest machine seen (CI), 45 s here
    p["train"].update(epochs=1, min_per_class=300, global_batch=8)
    p["placement"]["train"]["micro_batch"] = 4
    p["placement"]["train"]["run_name"] = "preempted"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(p))
    out = tmp_path / "out"
    args, env = train_command(cluster.address, params, train_inputs, out, shared)
    log_file = out / "logs" / "train.log"
    drainer = Drainer(cluster.address, tmp_path / "drain.log")
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        log = wait_for_line(log_file, "batches per epoch", proc, 300)
        batches = int(log.split("batches per epoch")[0].rsplit(":", 1)[1].split()[0])
        info = query_cluster(cluster.address)
        head = next(n for n, names in info["nodes"].items() if names == ["defr_node_head"])
        workers = [a["node"] for a in info["actors"] if a["cls"] == "RayTrainWorker" and a["state"] == "ALIVE"]
        assert len(workers) == 2, info["actors"]
        # two workers, one CPU per node: they run on two nodes, and one of them is not the head
        assert len(set(workers)) == 2, workers
        reclaimed = next(n for n in workers if n != head)
        # The notice gives the node 10 minutes; once the checkpoint is saved the node goes at once (a second
        # notice moves the deadline to now). A fixed deadline is a race either way: on a busy machine it
        # passed before the checkpoint was in, on a fast one the epoch ended before it (seen in CI: the run
        # resumed from the epoch's end, correctly, and no mid-epoch resume was left to see).
        drainer.notice(reclaimed, 600)
        wait_for_line(log_file, "[defr] preemption checkpoint saved", proc, 300)
        drainer.notice(reclaimed, 1)
        stdout, _ = proc.communicate(timeout=600)
    finally:
        drainer.close()
        if proc.poll() is None:
            proc.kill()
    log = log_file.read_text(errors="replace")
    assert proc.returncode == 0, stdout[-3000:] + log[-3000:]

    # one notice (a line may show twice in the log: Ray forwards worker output to the driver and its log)
    notice = sorted({ln for ln in log.splitlines() if "[defr] preemption notice" in ln})
    assert len(notice) == 1, log[-4000:]
    at_epoch, at_batch = (int(x) for x in notice[0].rsplit("checkpoint at epoch ", 1)[1].split(" batch "))
    assert at_epoch == 0 and 0 < at_batch < batches, notice
    assert "preemption checkpoint saved at epoch 0 batch " + str(at_batch) + ":" in log, log[-4000:]
    assert f"resuming epoch 0 at batch {at_batch} " in log, log[-4000:]
    assert "resuming from the checkpoint of epoch" not in log  # not back to an epoch's start

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["resumes"] == 1, metrics
    # the run's checkpoints are in the shared storage path, and the stage exported the model from there
    checkpoints = [p for p in (shared / "ray_results").rglob("checkpoint_*") if p.is_dir()]
    assert checkpoints and any(any(c.iterdir()) for c in checkpoints)
    assert (out / "model" / "model.safetensors").is_file()
    with open(out / "history.csv") as f:
        assert [row.split(",")[0] for row in f.read().splitlines()[1:]] == ["0"]
    # the restarted workers (the ones the GCS did not know at the notice) ran on the nodes left
    known = {a["id"] for a in info["actors"]}
    restarted = [a["node"] for a in query_cluster(cluster.address)["actors"]
                 if a["cls"] == "RayTrainWorker" and a["id"] not in known]
    assert len(restarted) == 2 and reclaimed not in restarted, restarted
