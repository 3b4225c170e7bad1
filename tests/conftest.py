"""Shared fixtures: the real HICO, MPII and V-COCO annotation files, the prepared demo, and GPU skipping."""
from __future__ import annotations

import dataclasses
import importlib
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_HICO = Path(os.environ.get("DEFR_SHARED_HICO", ROOT.parent / "shared" / "data" / "hico"))
SHARED_MPII = Path(os.environ.get("DEFR_SHARED_MPII", ROOT.parent / "shared" / "data" / "mpii"))
SHARED_PHOTOS = Path(os.environ.get("DEFR_SHARED_PHOTOS", ROOT.parent / "shared" / "data" / "photos"))
SHARED_VCOCO = Path(os.environ.get("DEFR_SHARED_VCOCO", ROOT.parent / "shared" / "data" / "vcoco"))

# `make test` runs two test processes (pytest-xdist) on the machine's cores: each process, and every stage
# and Ray worker it starts, gets its share of OpenMP / torch threads instead of as many as there are cores
# (idle OpenMP threads spin: threads beyond a process's share burn the CPU the other process waits for).
_TEST_PROCESSES = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _TEST_PROCESSES > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _TEST_PROCESSES)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def strict() -> bool:
    """True where everything the tests need must be there: under `make test` (DEFR_TEST_STRICT=1: it
    installed every dependency first) and on CI (CI=true, which has ../shared) unless DEFR_TEST_STRICT says
    otherwise (`make test-fast` sets 0: it installs no MMDetection). There a missing piece fails the run
    instead of turning it green by skipping: a module, the shared data, a size-limited filesystem (the
    ``tmpfs`` fixture).

    What may still skip in strict mode, and why: the tests marked ``gpu``, on a machine without a CUDA GPU
    (CI and `make test` run on CPU machines; a GPU is not something `make test` can install). On a GPU
    machine, DEFR_TEST_GPU=1 makes a missing GPU fail them too (``pytest -m gpu``); ``python -m bench gpu``
    is the fuller check (docs/performance.md)."""
    if os.environ.get("DEFR_TEST_STRICT") in ("0", "1"):
        return os.environ["DEFR_TEST_STRICT"] == "1"
    return os.environ.get("CI", "").lower() in ("true", "1")


def missing(reason: str) -> None:
    """Skips (a developer's partial install or checkout) or, where :func:`strict`, fails with ``reason``."""
    if strict():
        pytest.fail(f"{reason} (CI / make test: required here, not skipped)", pytrace=False)
    pytest.skip(f"{reason} (skipped: partial install or checkout; `make test` and CI require it)",
                allow_module_level=True)


def require_module(name: str, hint: str):
    """``pytest.importorskip`` that fails under CI / `make test`, which install the module."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        missing(f"{name} cannot be imported ({e}): {hint}")


def _shared(path: Path, marker: str, what: str, var: str) -> Path:
    if not (path / marker).exists():
        missing(f"{what} not found at {path} (set {var})")
    return path


@pytest.fixture(scope="session")
def shared_hico() -> Path:
    """The real HICO / HICO-DET annotation files in ../shared/data/hico (skip when absent, fail on CI)."""
    return _shared(SHARED_HICO, "anno.mat", "real HICO annotations", "DEFR_SHARED_HICO")


@pytest.fixture(scope="session")
def shared_mpii() -> Path:
    """The real MPII activity labels and split lists in ../shared/data/mpii (skip when absent, fail on CI)."""
    return _shared(SHARED_MPII, "activities.csv", "real MPII activity labels", "DEFR_SHARED_MPII")


@pytest.fixture(scope="session")
def shared_vcoco() -> Path:
    """The real V-COCO train / val annotation files in ../shared/data/vcoco (skip when absent, fail on CI)."""
    return _shared(SHARED_VCOCO, "vcoco_val.json", "real V-COCO annotations", "DEFR_SHARED_VCOCO")


@pytest.fixture(scope="session")
def shared_photos() -> Path:
    """Three real photographs with hand-drawn boxes in ../shared/data/photos (skip when absent, fail on CI)."""
    return _shared(SHARED_PHOTOS, "boxes.json", "shared photos", "DEFR_SHARED_PHOTOS")


@pytest.fixture
def tmpfs(tmp_path):
    """tmpfs(options) -> a folder on a fresh tmpfs mounted with ``options`` (``size=300k``, ``ro,size=100k``):
    a full or read-only disk, made without root. A ``sleep`` in a new user and mount namespace (`unshare`,
    util-linux) mounts it and holds it; this process reaches it through ``/proc/<pid>/root``, the sleeper's
    view of the file tree. Where user namespaces are not allowed (a container's seccomp profile), a plain
    `mount` (root); where neither works it skips, and fails in strict mode."""
    import shutil
    import subprocess
    import sys

    holders: list[subprocess.Popen] = []
    mounted: list[Path] = []

    def make(options: str) -> Path:
        if not sys.platform.startswith("linux") or not shutil.which("unshare"):
            missing("a size-limited filesystem without root needs Linux and `unshare` (util-linux)")
        where = tmp_path / f"tmpfs{len(holders) + len(mounted)}"
        where.mkdir()
        holder = subprocess.Popen(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                                   'mount -t tmpfs -o "$1" tmpfs "$2" && echo mounted && exec sleep 3600', "sh",
                                   options, str(where)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        holders.append(holder)
        if holder.stdout.readline().strip() == "mounted":
            return Path(f"/proc/{holder.pid}/root") / where.relative_to(where.anchor)
        why = holder.communicate(timeout=10)[1].strip()
        plain = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True,
                               text=True, timeout=30)
        if plain.returncode:
            missing(f"cannot mount a tmpfs, neither in a user namespace ({why}) nor as this user "
                    f"({plain.stderr.strip()})")
        mounted.append(where)
        return where

    yield make
    for holder in holders:  # the tmpfs goes with the namespace's last process
        holder.kill()
        holder.communicate(timeout=10)
    for where in mounted:
        subprocess.run(["umount", str(where)], capture_output=True, timeout=30)


@pytest.fixture
def load_calls(monkeypatch) -> list[str]:
    """Counts real language-model loads: every text-encoder backend's loader is wrapped, and still runs."""
    from pipeline.text import encoders

    calls: list[str] = []
    for backend, real in list(encoders.LOADERS.items()):
        def counting(enc, real=real):
            calls.append(enc.model_id)
            return real(enc)
        monkeypatch.setitem(encoders.LOADERS, backend, counting)
    return calls


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook, which reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    import torch

    # Everything under tests/integration is `integration`, marked or not: `make test-fast` selects by it.
    for item in items:
        if "integration" in Path(str(item.fspath)).parts and "integration" not in item.keywords:
            item.add_marker(pytest.mark.integration)
    # pytest-xdist (`make test` runs two processes, --dist loadgroup): every test of the session's pipeline
    # run goes to one process, so that run (and its DVC cache) is made once, not once per process.
    if config.pluginmanager.hasplugin("xdist"):
        for item in items:
            if "pipeline_run" in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group("pipeline_run"))
    if torch.cuda.is_available() or os.environ.get("DEFR_TEST_GPU") == "1":  # =1: no GPU fails the gpu tests
        return
    # The one skip strict mode allows (see strict()): CI and `make test` run on machines without a GPU.
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is visible (allowed in strict mode: CI has no GPU; "
                                   "DEFR_TEST_GPU=1 makes it a failure)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


DEMO_TEST_PARAMS = {
    "demo": {"dataset": "hico", "seed": 0, "n_train": 150, "n_test": 40, "image_size": [160, 128]},
    "prepare": {"dataset": "hico", "root": None, "val_fraction": 0.1, "seed": 0, "check_images": True,
                "hico": {"anno": "anno.mat", "hicodet_train": "instances_train2015.json",
                         "hicodet_test": "instances_test2015.json", "train_images": "images/train2015",
                         "test_images": "images/test2015"}},
    "placement": {"prepare": {"workers": 4}},
}


@pytest.fixture(scope="session")
def prepared_demo(tmp_path_factory) -> Path:
    """A small demo run through the real generate_demo and prepare stages.

    Returns the prepared folder (images/pairs/classes/rejects.parquet); the raw data (JPEGs the
    tables point to, by absolute path) sits beside it in ``../raw``.
    """
    import yaml

    from stages import generate_demo, prepare

    work = tmp_path_factory.mktemp("demo")
    import copy

    params = copy.deepcopy(DEMO_TEST_PARAMS)
    params["prepare"]["root"] = str(work / "raw")
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    generate_demo.main(["--params", str(work / "params.yaml"), "--out", str(work / "raw")])
    prepare.main(["--params", str(work / "params.yaml"), "--out", str(work / "prepared")])
    return work / "prepared"


@dataclasses.dataclass(frozen=True)
class SharedRay:
    """The session's Ray head: where it listens and the environment that reaches it (token included)."""

    address: str
    env: dict


@pytest.fixture(scope="session")
def shared_ray(tmp_path_factory) -> SharedRay:
    """One local Ray head for every test that only needs "a Ray" (stages then join it through
    placement.ray_address instead of starting and stopping a Ray each): ``pipeline.distributed.LocalHead``,
    what `make demo` runs its stages on (loopback only, Ray's token authentication with a token of its own,
    passed to the processes that join it through ``env``). Tests that need a fresh Ray, a killed raylet or
    two nodes start their own. Ended with the session: only the `ray start --block` process started here
    and its process group, never `ray stop` (that would end every Ray of this user on the machine)."""
    from pipeline.distributed import LocalHead

    # the CPUs a stage's own local Ray would have; a small object store (the tests move little data)
    head = LocalHead(tmp_path_factory.mktemp("ray"), num_cpus=max(2, os.cpu_count() or 2), object_store_mb=500)
    try:
        head.start()
    except RuntimeError as e:
        pytest.fail(f"the shared test Ray did not start: {e}: {(head.work_dir / 'head.log').read_text()[-2000:]}")
    yield SharedRay(head.address, head.env)
    head.stop()


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory, shared_ray) -> Path:
    """The shrunken project (tests/dvc_project.py) with its whole pipeline run once per test session by
    `dvc repro` and committed, its stages joining the session's Ray (placement.ray_address, which no
    stage tracks). Read-only: a test that runs DVC works in its own ``clone_project`` of it (git clone, the
    DVC cache hard-linked, `dvc checkout`) instead of running the pipeline again; DVC commands get the
    Ray's token through ``tests.dvc_project.env``."""
    from tests.dvc_project import ran_pipeline, use_ray

    use_ray(shared_ray)
    repo, seconds = ran_pipeline(tmp_path_factory.mktemp("pipeline-run") / "project", shared_ray.address)
    (repo.parent / "repro_seconds").write_text(f"{seconds:.1f}\n")
    return repo
