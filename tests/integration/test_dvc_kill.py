"""Killing `dvc repro` during training leaves no stage process behind, and the next `dvc repro` resumes
training from its last checkpoint and says so in metrics/train.json (DVC, Ray and Ray Train for real)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.dvc_project import clone_project, dvc, edit_params, env

# The stage's grace between the SIGTERM and the SIGKILL to what is left (DEFR_STOP_GRACE_S, default 15 s):
# short here, so that a stage that does not stop by itself is killed sooner; the checks are the same.
GRACE_S = "5"

# the session's pipeline run (the pipeline_run fixture) counts against the first test that asks for it
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(2400)]


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc: parent links)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def alive(pids: set[int]) -> set[int]:
    out = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":  # a zombie has exited; only its parent's wait is missing
            out.add(pid)
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"


def model_files(repo: Path) -> dict[str, bytes]:
    folder = repo / "models" / "defr"
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.is_dir() else {}


def checkpoints(runs: Path) -> set[str]:
    """The checkpoints Ray Train's snapshots list (an epoch's checkpoint counts once listed there: its
    folder appears earlier)."""
    found = set()
    for snapshot in runs.glob("*/checkpoint_manager_snapshot.json"):
        try:
            results = json.loads(snapshot.read_text())["checkpoint_results"]
        except (OSError, ValueError, KeyError):  # being rewritten: the next look sees it
            continue
        found |= {f"{snapshot.parent.name}/{r['checkpoint_dir_name']}" for r in results}
    return found


def kill_during_training(repo: Path, sig: signal.Signals) -> None:
    """Starts `dvc repro train`, sends ``sig`` to dvc once the run has a checkpoint it did not have before,
    and checks that every process below dvc is gone and the last good model is back in place."""
    last_good = model_files(repo)
    assert last_good, "no model to keep"
    runs = repo / "runs"
    before = checkpoints(runs)
    proc = subprocess.Popen([str(Path(sys.executable).parent / "dvc"), "repro", "train"], cwd=repo,
                            env={**env(), "DEFR_STOP_GRACE_S": GRACE_S},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 600
    tree: set[int] = set()
    while time.monotonic() < deadline and proc.poll() is None:
        tree |= descendants(proc.pid)
        if checkpoints(runs) - before:
            break
        time.sleep(0.5)
    assert proc.poll() is None, f"training ended before it could be killed:\n{proc.stdout.read()[-3000:]}"
    tree |= descendants(proc.pid)
    stage = [p for p in tree if "stages.train" in cmdline(p)]
    assert stage, f"no train stage process under dvc: {[cmdline(p) for p in tree]}"
    os.kill(proc.pid, sig)
    proc.wait(timeout=60)
    proc.stdout.close()

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and alive(tree):
        time.sleep(0.5)
    left = alive(tree)
    log = (repo / "logs" / "train.log").read_text()[-3000:] if (repo / "logs" / "train.log").exists() else ""
    assert not left, f"processes left running after {sig.name} to dvc: {[cmdline(p)[:60] for p in left]}\n{log}"
    # The killed run published no model, and the last good one is back (DVC had removed it before the run).
    assert model_files(repo) == last_good, f"models/defr is not the last good model after {sig.name}"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the stage's processes")
def test_killed_dvc_repro_leaves_no_stage_running_and_the_rerun_resumes(pipeline_run, shared_ray, tmp_path):
    """SIGTERM (Ctrl-C's cousin, what a CI runner sends) and then SIGKILL (OOM killer, `kill -9`) to dvc in
    the middle of training, one after the other on one project: the second run resumes the first's
    checkpoint and is killed after its own next one; the third finishes, resumed twice."""
    # The session's pipeline run, cloned: embed_text's outputs are there; train (6 epochs now) is to run.
    repo = clone_project(pipeline_run, tmp_path / "project")
    # its own local Ray (started below the stage, so the kill must end it too), not the session's shared one
    edit_params(repo, {"train.epochs": 6, "train.restart_epochs": 6, "placement.ray_address": ""})
    for sig in (signal.SIGTERM, signal.SIGKILL):
        kill_during_training(repo, sig)

    # the run that finishes may join the session's Ray (placement.ray_address is no stage's param): it must
    # resume the killed runs' checkpoints all the same
    edit_params(repo, {"placement.ray_address": shared_ray.address})
    rerun = dvc("repro", "train", cwd=repo)
    metrics = json.loads((repo / "metrics" / "train.json").read_text())
    assert metrics["resumes"] == 2 and metrics["epochs"] == 6, (metrics, rerun.stdout[-2000:])
    history = (repo / "plots" / "train" / "history.csv").read_text().splitlines()
    assert [h.split(",")[0] for h in history[1:]] == [str(e) for e in range(6)]
