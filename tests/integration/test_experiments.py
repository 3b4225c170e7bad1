"""Ablations as DVC experiments, for real: a `dvc exp run --queue` grid run by `dvc exp run --run-all` gives one
`dvc exp show` table whose every point carries its params, test mAP and HICO-DET numbers; a `dvc exp run
--temp` shows its epochs in `dvc exp show` while it trains and keeps its checkpoints in the main workspace.
On a clone of the session's shrunken pipeline run (tests/dvc_project.py, the ``pipeline_run`` fixture), its
stages joining the session's Ray.

Time on this machine (2 CPUs shared with other jobs): the grid 71 s (it re-runs only score_regions and
evaluate, twice), the temporary run 104 s (8 epochs of the tiny model), after the session's pipeline run
(209 s when this module runs alone).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import psutil
import pytest

from tests.dvc_project import clone_project, dvc, env

# Each test's own bound (setup included: the session's pipeline run may happen inside the first): a hung
# experiment fails the test here, never at CI's limit.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(2400)]
LIVE = "logs/live/train/metrics.json"  # dvc.yaml's top-level metrics: the train stage's DVCLive summary
DVC = str(Path(sys.executable).parent / "dvc")


@pytest.fixture(scope="module")
def project(pipeline_run, tmp_path_factory) -> Path:
    project = clone_project(pipeline_run, tmp_path_factory.mktemp("experiments") / "project")
    yield project
    end_what_dvc_left(project)


def dvc_logged(args: list[str], cwd: Path, timeout: float, check: bool = True) -> str:
    """A DVC command that may leave detached processes (the experiment queue's worker): its output goes to a
    file, never a pipe (what it leaves behind would hold the pipe open and the wait would never end); it
    runs in a session of its own, which is killed if it outlives ``timeout``. Returns the output."""
    log = cwd.parent / f"dvc-{'-'.join(a.strip('-') for a in args[:3])}-{time.monotonic_ns()}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([DVC, *args], cwd=cwd, env=env(), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(f"dvc {' '.join(args)} still running after {timeout:.0f} s (killed):\n"
                             f"{log.read_text(errors='replace')[-3000:]}") from None
    output = log.read_text(errors="replace")
    assert proc.returncode == 0 or not check, f"dvc {' '.join(args)} failed:\n{output[-4000:]}"
    return output


def _working_in(project: Path) -> list[psutil.Process]:
    """Processes (not the session's Ray workers) whose working directory is in ``project``: DVC's queue
    worker and the stages of its experiments run there (.dvc/tmp/exps/...)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            if p.pid != os.getpid() and "ray::" not in cmd and "ray/_private/workers" not in cmd and \
                    Path(p.cwd()).is_relative_to(project):
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


def end_what_dvc_left(project: Path) -> list[str]:
    """Ends what the experiment commands started and left running, as docs/failures.md tells a user to:
    `dvc queue stop --kill` (the queue's workers, and the experiments they run); then SIGKILLs whatever still
    works in the project after 30 s. Returns the command lines that only the SIGKILL ended."""
    dvc_logged(["queue", "stop", "--kill"], project, timeout=120, check=False)
    left = _working_in(project)
    _, left = psutil.wait_procs(left, timeout=30)
    killed = []
    for p in left:
        try:
            killed.append(" ".join(p.cmdline()))
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(left, timeout=10)
    if killed:
        warnings.warn(f"`dvc queue stop --kill` left {len(killed)} process(es) in {project}, killed: {killed}")
    return killed


def experiments(show: list[dict]) -> dict[str, dict]:
    """name -> data ({"params": ..., "metrics": ...}) of each experiment in `dvc exp show --json` (the
    baseline commits' children; not the workspace or the commits themselves)."""
    out = {}
    for baseline in show:
        for exp_range in baseline.get("experiments") or []:
            for state in exp_range["revs"]:
                out[exp_range.get("name") or state["name"]] = state["data"]
    return out


def file_data(data: dict, kind: str, path: str) -> dict:
    """The parsed content of one params or metrics file of an experiment's data."""
    return data[kind][path]["data"]


def test_a_queued_grid_gives_one_table_with_params_test_map_and_hico_det(project):
    # score_regions.score_power re-runs score_regions and evaluate only: the cheapest grid that reaches
    # the HICO-DET numbers. The same syntax builds the train ablations (docs/training.md).
    dvc("exp", "run", "--queue", "-S", "score_regions.score_power=1,2", cwd=project)
    # --run-all starts the queue's worker (`dvc exp queue-worker ... --clean`, detached): output to a file.
    try:
        dvc_logged(["exp", "run", "--run-all"], project, timeout=600)
    finally:
        end_what_dvc_left(project)
    assert not _working_in(project)

    exps = experiments(json.loads(dvc("exp", "show", "--json", cwd=project).stdout))
    assert len(exps) == 2, sorted(exps)
    seen = {}
    for name, data in exps.items():
        power = file_data(data, "params", "params.yaml")["score_regions"]["score_power"]
        classification = file_data(data, "metrics", "metrics/classification.json")
        detection = file_data(data, "metrics", "metrics/detection.json")
        assert 0 <= classification["map"] <= 100 and "few10" in classification, name
        assert 0 <= detection["default"]["full"] <= 100 and "known_object" in detection, name
        seen[power] = (classification["map"], detection["default"]["full"])
    assert sorted(seen) == [1, 2]
    assert seen[1][0] == seen[2][0]  # classification does not depend on the region scores
    assert seen[1][1] != seen[2][1]  # HICO-DET does: each point ran its own score_regions

    table = dvc("exp", "show", "--md", "--only-changed", cwd=project).stdout
    assert "score_power" in table and "default.full" in table, table  # unchanged columns (map) are left out


def running_live_steps(project: Path) -> list[int]:
    """The live ``step`` (epoch) of each running experiment in `dvc exp show --json` (DVC reads a running
    experiment's temporary workspace, where the train stage's DVCLive files grow epoch by epoch)."""
    out = dvc("exp", "show", "--json", cwd=project, check=False)
    if out.returncode != 0:
        return []
    steps = []
    for baseline in json.loads(out.stdout or "[]"):
        for exp_range in baseline.get("experiments") or []:
            if (exp_range.get("executor") or {}).get("state") != "running":
                continue
            for state in exp_range["revs"]:
                live = ((state.get("data") or {}).get("metrics") or {}).get(LIVE, {}).get("data") or {}
                if "step" in live:
                    steps.append(live["step"])
    return steps


def test_a_temporary_experiment_shows_its_epochs_live_and_keeps_its_checkpoints(project):
    # DVC runs --temp (and queued) experiments in a copy under .dvc/tmp/exps/ and deletes it afterwards.
    log = project.parent / "exp-run-temp.log"
    with open(log, "w") as out:  # a file, not a pipe (see dvc_logged); its own session, ended below
        proc = subprocess.Popen([DVC, "exp", "run", "--temp", "--name", "eight-epochs", "-S", "train.epochs=8",
                                 "train"], cwd=project, env=env(), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    live_steps = []
    try:
        while proc.poll() is None:
            steps = running_live_steps(project)
            if steps and proc.poll() is None:
                live_steps.extend(steps)
                if min(steps) < 7:  # an epoch shown while later ones still train
                    break
            time.sleep(2)
        proc.wait(600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    output = log.read_text(errors="replace")
    assert proc.returncode == 0, output[-4000:]
    assert live_steps and min(live_steps) < 7, f"dvc exp show never showed a running epoch: {live_steps}"

    exps = experiments(json.loads(dvc("exp", "show", "--json", cwd=project).stdout))
    run = file_data(exps["eight-epochs"], "metrics", "metrics/train.json")["run"]
    storage_path = yaml_load(project / "params.yaml")["placement"]["train"]["storage_path"]
    assert not Path(storage_path).is_absolute()
    runs = project / storage_path / run
    assert runs.is_dir(), f"no {runs}; {storage_path}/ holds {sorted(p.name for p in runs.parent.glob('*'))}"
    assert any(runs.glob("checkpoint_*")), sorted(p.name for p in runs.iterdir())
    assert not list((project / ".dvc" / "tmp" / "exps").glob(f"tmp*/{storage_path}/{run}"))


def yaml_load(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())
