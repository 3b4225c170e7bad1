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

from tests.dvc_project import dvc, edit_params, env, new_project

pytestmark = [pytest.mark.integration, pytest.mark.slow]


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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the stage's processes")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_dvc_repro_leaves_no_stage_running_and_the_rerun_resumes(tmp_path, sig):
    repo = new_project(tmp_path / "project")
    edit_params(repo, {"train.epochs": 6, "train.restart_epochs": 6})
    dvc("repro", "embed_text", cwd=repo)
    proc = subprocess.Popen([str(Path(sys.executable).parent / "dvc"), "repro", "train"], cwd=repo, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    runs = repo / "runs"
    deadline = time.monotonic() + 600
    tree: set[int] = set()
    while time.monotonic() < deadline and proc.poll() is None:
        tree |= descendants(proc.pid)
        # An epoch's checkpoint counts once Ray Train's snapshot lists it (the folder appears earlier).
        if any("checkpoint_" in s.read_text() for s in runs.glob("*/checkpoint_manager_snapshot.json")):
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
    assert not (repo / "models" / "defr").exists(), "the killed run must not publish a model"

    rerun = dvc("repro", "train", cwd=repo)
    metrics = json.loads((repo / "metrics" / "train.json").read_text())
    assert metrics["resumes"] >= 1 and metrics["epochs"] == 6, (metrics, rerun.stdout[-2000:])
    history = (repo / "plots" / "train" / "history.csv").read_text().splitlines()
    assert [h.split(",")[0] for h in history[1:]] == [str(e) for e in range(6)]
