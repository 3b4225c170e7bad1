"""The one way every stage connects to Ray, and the check that Ray Train checkpoints go to shared storage.

A stage calls ``init_ray(params["address"])``: the same code runs on a laptop (a local Ray starts) and on
a cluster (``RAY_ADDRESS`` is set by ``ray job submit``, KubeRay, or the launcher's head setup). A
training stage then calls ``check_storage_path(storage_path, cluster_nodes(), shared)`` before it hands
``storage_path`` to Ray Train: on more than one node every worker writes its checkpoint shards there and
the controller reads them back, so a path that exists on one node only loses checkpoints silently.

Before a stage hands work to Ray it checks that the cluster can hold it: :mod:`pipeline.capacity`.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
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


CONNECT_TIMEOUT_ENV = "DEFR_RAY_CONNECT_TIMEOUT_S"  # default for init_ray's timeout (placement.connect_timeout_s)
DEFAULT_CONNECT_TIMEOUT_S = 30.0
HOW_TO_REACH = ("start one with `ray start --head` (then RAY_ADDRESS=<head-ip>:6379), check the address and "
                "that its port is open from here, or leave placement.ray_address and RAY_ADDRESS empty for a "
                "local Ray (cluster/README.md)")


class RayConnectError(RuntimeError):
    """The Ray cluster at an address cannot be reached (names the address and what to do)."""


def check_python_path(executable: str = sys.executable) -> None:
    """Refuses a Python whose path has whitespace: Ray starts workers that need a runtime environment
    (Ray Train's) through an unquoted shell command, so they never start and the run hangs."""
    if any(c.isspace() for c in executable):
        raise RuntimeError(
            f"the Python executable {executable!r} has a space in its path: Ray cannot start its workers "
            "from there (its raylet runs `bash -c <python path> ...` unquoted) and training would hang. Move "
            "the project, or put its virtual environment elsewhere (`make demo VENV=/opt/defr-venv`).")


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of ``host:port`` / ``ray://host:port``; None for ``auto``, ``local`` and the like."""
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def listening(address: str, timeout_s: float = 2) -> bool:
    """Whether something accepts TCP connections at ``host:port`` (``ray://host:port`` too)."""
    import socket

    hp = _host_port(address)
    if hp is None:
        return False
    try:
        with socket.create_connection(hp, timeout=timeout_s):
            return True
    except OSError:
        return False


def check_reachable(address: str, timeout_s: float) -> None:
    """A TCP connection to the address's host and port, so a wrong address fails in seconds, not after
    Ray's own retries (minutes of "Failed to connect to GCS")."""
    import socket

    hp = _host_port(address)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=max(1.0, min(timeout_s, 10.0))):
            pass
    except OSError as e:
        raise RayConnectError(f"cannot reach the Ray cluster at {address} ({type(e).__name__}: {e}); "
                              f"{HOW_TO_REACH}") from None


def init_ray(address: str | None = None, num_cpus: int | None = None, timeout_s: float | None = None,
             **kwargs):
    """Connects to Ray once per process and returns the ``ray`` module.

    Args:
        address: cluster address (``ray://host:10001`` or ``host:6379`` or ``auto``); ``None`` or ``""``
            falls back to ``RAY_ADDRESS``, and to a new local Ray when that is unset too.
        num_cpus: CPUs for a local Ray (ignored when joining a cluster).
        timeout_s: how long connecting may take (default: ``DEFR_RAY_CONNECT_TIMEOUT_S`` or 30 s).
        **kwargs: passed to ``ray.init``.

    Raises:
        RayConnectError: the address is unreachable, or connecting takes longer than ``timeout_s``.
        RuntimeError: a local Ray would start from a Python path Ray cannot use (whitespace).
    """
    import ray

    if ray.is_initialized():
        return ray
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    timeout_s = float(timeout_s or os.environ.get(CONNECT_TIMEOUT_ENV) or DEFAULT_CONNECT_TIMEOUT_S)
    address = resolve_address(address)
    if address:
        log.info("connecting to the Ray cluster at %s (timeout %.0f s)", address, timeout_s)
        check_reachable(address, timeout_s)
        hp = _host_port(address)
        if hp and (hp[0] in ("localhost", "::1") or hp[0].startswith("127.")):
            # A head on loopback: else Ray rewrites 127.0.0.1 to this machine's address, where it is not.
            _loopback_node_ip()
        _init_within(timeout_s, address, dict(address=address, log_to_driver=True, **kwargs))
    else:
        check_python_path()
        secure_local_ray()
        log.info("no Ray address given (placement.ray_address or RAY_ADDRESS): starting a local Ray "
                 "(loopback only, token authentication)")
        # "local": a new Ray of this process's own. With no address, ray.init would join whatever
        # `ray start` head it finds on this machine (/tmp/ray/ray_current_cluster), someone else's included.
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=True, **kwargs)
        protect_token_file()
    return ray


AUTH_MODE_ENV = "RAY_AUTH_MODE"
# Ray binds a node's gRPC servers (GCS, raylet, workers, agents) to the node IP, and to loopback only
# when the node IP is loopback; ray.init picks the node IP from this switch, which Ray keeps for laptops
# (named after Windows and macOS, where it is off by default). Off = a single-node Ray nobody else reaches.
LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def secure_local_ray() -> None:
    """Makes the next ``ray.init()`` start a Ray that only this user on this machine can use.

    Its servers listen on loopback only (no port on any other interface), and Ray's token authentication
    is on: a new local Ray creates ``~/.ray/auth_token`` (or uses ``RAY_AUTH_TOKEN`` /
    ``RAY_AUTH_TOKEN_PATH``) and refuses drivers without it. An explicit ``RAY_AUTH_MODE`` is kept as the
    user set it (a warning says what ``disabled`` means); nothing in the project sets it to ``disabled``.
    Both settings reach the processes Ray starts through the environment.
    """
    _loopback_node_ip()
    # Unset: Ray turns token authentication on for a new local Ray itself (and creates the token). Setting
    # "token" here instead would come too late for Ray's already-read config in this process.
    mode = os.environ.get(AUTH_MODE_ENV)
    if mode is not None and mode.lower() != "token":
        log.warning("%s=%s: this local Ray runs without token authentication (it still listens on "
                    "loopback only, so only processes on this machine can reach it); unset %s to turn "
                    "authentication back on", AUTH_MODE_ENV, mode, AUTH_MODE_ENV)


def _loopback_node_ip() -> None:
    """This process (and what it starts) takes 127.0.0.1 as its node IP (LOCAL_ONLY_ENV)."""
    os.environ[LOCAL_ONLY_ENV] = "0"
    from ray._private import ray_constants  # read when ray.init picks the node IP, not only at import

    ray_constants.ENABLE_RAY_CLUSTER = False


def protect_token_file() -> None:
    """Makes Ray's token file readable by its owner only (Ray writes it with the default umask, 0644)."""
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        if path.is_file() and path.stat().st_uid == os.getuid() and path.stat().st_mode & 0o077:
            path.chmod(0o600)
    except OSError as e:  # a read-only home: Ray could read it, so could others; say so, do not fail
        log.warning("could not make %s private (%s)", path, e)


def _init_within(timeout_s: float, address: str, kwargs: dict) -> None:
    """``ray.init(**kwargs)`` that gives up after ``timeout_s`` (Ray's own connect loop can retry for
    minutes on an address that accepts TCP but is no Ray head)."""
    import threading

    import ray

    outcome: dict = {}

    def connect() -> None:
        try:
            _check_token(address)
            ray.init(**kwargs)
        except BaseException as e:  # noqa: BLE001 - handed back to the caller's thread
            outcome["error"] = e

    thread = threading.Thread(target=connect, daemon=True, name="ray-connect")
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise RayConnectError(f"no answer from a Ray cluster at {address} within {timeout_s:.0f} s "
                              f"({CONNECT_TIMEOUT_ENV} or placement.connect_timeout_s sets the limit); "
                              f"{HOW_TO_REACH}")
    if "error" in outcome:
        e = outcome["error"]
        if type(e).__name__ == "AuthenticationError":
            raise RayConnectError(
                f"the Ray cluster at {address} refused this driver: its token authentication needs the "
                f"cluster's token, and this process has {_token_source()}. Set {AUTH_MODE_ENV}=token and "
                "RAY_AUTH_TOKEN_PATH=<file holding the cluster's token> (or RAY_AUTH_TOKEN) in the environment "
                "that runs dvc repro or defr (cluster/README.md: 'Connecting')") from None
        raise RayConnectError(f"cannot connect to the Ray cluster at {address}: {type(e).__name__}: {e}; "
                              f"{HOW_TO_REACH}") from e


def _check_token(address: str) -> None:
    """Asks the GCS at a ``host:port`` address one question with this process's credentials, so a
    missing or wrong token fails in a second with Ray's AuthenticationError (``ray.init`` itself retries
    until the timeout and then reports no answer). ``ray://`` client addresses are left to ``ray.init``."""
    if address.startswith("ray://") or _host_port(address) is None:
        return
    from ray._raylet import GcsClient

    GcsClient(address=address)


def _token_source() -> str:
    """Where this process would take a Ray token from, for the refusal message (never the token)."""
    mode = os.environ.get(AUTH_MODE_ENV)
    if (mode or "").lower() != "token":
        return f"{AUTH_MODE_ENV}={mode or '(unset)'}, so it sends none"
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "a token from RAY_AUTH_TOKEN that the cluster does not accept"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    return (f"a token from {path} that the cluster does not accept" if Path(path).is_file()
            else f"no token (RAY_AUTH_TOKEN unset, no file at {path})")


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


class LocalHead:
    """A Ray head on this machine for several processes in turn (the stages of one ``dvc repro``): started
    once, loopback only, with a token of its own, ended with everything it started.

    Each stage that starts its own local Ray pays Ray's start and stop (10-20 s each here); joining one
    head instead does not. The head is a ``ray start --head --block`` process in a session of its own, so
    :meth:`stop` ends its whole process group (never ``ray stop``, which would end every Ray of this user).

    Args:
        work_dir: where the token file and the head's log go. None: a new private temporary folder
            ``defr-ray-<pid>-*``, removed by :meth:`stop`, and (a killed process never gets there) by the
            next head started on this machine once that pid is gone.
        num_cpus: the head's CPUs (default: this machine's, as a stage's own local Ray would have).
        object_store_mb: the object store's size (default: Ray's, 30 % of the memory).
        autoscaling_config: an autoscaler cluster config for the head's autoscaler (as `ray up` gives it;
            Ray's fake multi-node provider makes a local autoscaling cluster for tests).
        env: more environment for the head and what it starts (e.g. ``RAY_FAKE_CLUSTER=1``).
        port: the head's GCS port (default: a free one).
    """

    def __init__(self, work_dir: str | os.PathLike | None = None, num_cpus: int | None = None,
                 object_store_mb: int | None = None, autoscaling_config: str | os.PathLike | None = None,
                 env: dict[str, str] | None = None, port: int | None = None):
        self._own_dir = work_dir is None
        self.work_dir = Path(work_dir) if work_dir is not None else _new_head_dir()
        self.num_cpus = num_cpus or max(1, os.cpu_count() or 1)
        self.object_store_mb = object_store_mb
        self.autoscaling_config = autoscaling_config
        self.extra_env = dict(env or {})
        self.port = port
        self.address = ""
        self.env: dict[str, str] = {}
        self._head = None

    def start(self, timeout_s: float = 180.0) -> "LocalHead":
        """Starts the head and waits until a driver with its token can join; returns self."""
        import subprocess
        import time

        from ray._private.authentication.authentication_token_generator import generate_new_authentication_token

        self.work_dir.mkdir(parents=True, exist_ok=True)
        token = self.work_dir / "auth_token"
        token.write_text(generate_new_authentication_token())
        token.chmod(0o600)
        self.env = {**self.extra_env, AUTH_MODE_ENV: "token", "RAY_AUTH_TOKEN_PATH": str(token),
                    "RAY_USAGE_STATS_ENABLED": "0", LOCAL_ONLY_ENV: "0"}
        ray_cli = Path(sys.executable).parent / "ray"

        def launch() -> None:
            port = self.port or _free_port()
            ports = [f"--{name}={_free_port()}" for name in ("dashboard-agent-listen-port",
                                                             "dashboard-agent-grpc-port", "metrics-export-port",
                                                             "runtime-env-agent-port")]
            with open(self.work_dir / "head.log", "a") as log_file:
                self._head = subprocess.Popen(
                    [str(ray_cli), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
                     *ports, f"--num-cpus={self.num_cpus}", "--include-dashboard=false", "--disable-usage-stats",
                     *([f"--object-store-memory={self.object_store_mb * 1024 ** 2}"] if self.object_store_mb else []),
                     *([f"--autoscaling-config={self.autoscaling_config}"] if self.autoscaling_config else [])],
                    env={**os.environ, **self.env}, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
            self.address = f"127.0.0.1:{port}"

        launch()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._head.poll() is not None:
                # `ray start` gave up: Ray gives the node a fixed 30 s to register with its GCS, which a busy
                # machine can pass ("The current node timed out during startup"). Again, within timeout_s.
                last = (self.work_dir / "head.log").read_text(errors="replace").strip().splitlines()[-1:]
                log.warning("the local Ray head exited (%s); starting it again", last[0] if last else "no output")
                self._kill()
                launch()
                continue
            # Ready = a driver with the token joins and sees the node's CPUs (the GCS alone answers earlier).
            probe = [sys.executable, "-c", f"import ray; ray.init(address={self.address!r}, log_to_driver=False); "
                                           "assert ray.cluster_resources().get('CPU')"]
            try:
                if subprocess.run(probe, env={**os.environ, **self.env}, capture_output=True,
                                  timeout=60).returncode == 0:
                    return self
            except subprocess.TimeoutExpired:
                pass
            time.sleep(1)
        self._kill()  # its folder stays, for the log named here (the next head removes it once we are gone)
        raise RuntimeError(f"a local Ray head did not start within {timeout_s:.0f} s "
                           f"(log: {self.work_dir / 'head.log'})")

    def stop(self) -> None:
        """Ends the head and every process of its group (GCS, raylet, agents, workers) at once, and removes
        its token and log when the folder was its own."""
        import shutil

        self._kill()
        if self._own_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def _kill(self) -> None:
        import signal

        if self._head is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._head.pid, signal.SIGKILL)  # SIGTERM would drain the node for ~30 s first
        with contextlib.suppress(Exception):
            self._head.wait(10)
        self._head = None

    def __enter__(self) -> "LocalHead":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


HEAD_DIR_PREFIX = "defr-ray-"


def _new_head_dir() -> Path:
    """A new private folder ``defr-ray-<pid>-*`` in the temp dir, after removing those of processes that are
    gone (a SIGKILLed ``make demo`` never reaches :meth:`LocalHead.stop`; each folder holds a token)."""
    import shutil
    import tempfile

    for old in Path(tempfile.gettempdir()).glob(f"{HEAD_DIR_PREFIX}*"):
        pid = old.name[len(HEAD_DIR_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{HEAD_DIR_PREFIX}{os.getpid()}-"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
