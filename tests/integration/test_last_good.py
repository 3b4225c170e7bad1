"""A failed `dvc repro` keeps the last good results (stage_support/last_good.py), with DVC run for real.

A toy DVC project whose one stage runs through the project's stage console (``stage_support.console.run``, as
every stage does) and writes a cached folder and a ``cache: false`` metrics file, both atomically. After a
good run, the stage fails on a bad param, on a bad input, and is killed (SIGKILL to the stage, SIGTERM to
dvc): each time DVC has removed the outputs before running the command, and afterwards the workspace holds
the last good ones again, byte for byte, and the console says what was kept.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests.dvc_project import env

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.integration]

STAGE = textwrap.dedent('''
    """A toy stage: params toy.value (an int; 'hang' waits to be killed), input data.txt -> out/, metrics.json."""
    import json, os, sys, time
    from pathlib import Path

    import yaml

    from stage_support import console


    def main():
        value = yaml.safe_load(Path("params.yaml").read_text())["toy"]["value"]
        Path("started").write_text(str(os.getpid()))
        if value == "hang":
            time.sleep(600)
        if not isinstance(value, int):
            raise ValueError(f"params.yaml: toy.value={value!r} is not an integer")
        data = Path("data.txt").read_text()
        if not data.strip().isdigit():
            raise ValueError(f"data.txt: expected a number, found {data.strip()!r}")
        tmp = Path("out.tmp")
        tmp.mkdir()
        (tmp / "model.bin").write_bytes(bytes([value % 256]) * 1000)
        (tmp / "notes.txt").write_text(f"value {value} data {data.strip()}")
        tmp.rename("out")
        Path("metrics.tmp").write_text(json.dumps({"score": value * int(data)}))
        os.replace("metrics.tmp", "metrics.json")


    if __name__ == "__main__":
        console.run(main, "toy")
''')

DVC_YAML = textwrap.dedent('''
    stages:
      toy:
        cmd: python toy_stage.py
        deps: [toy_stage.py, data.txt]
        params: [toy]
        outs: [out]
        metrics:
          - metrics.json:
              cache: false
''')


def project_env() -> dict[str, str]:
    return {**env(), "PYTHONPATH": str(ROOT), "DEFR_STOP_GRACE_S": "3", "DEFR_LOG_DIR": "logs"}


def dvc(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([str(BIN / "dvc"), *args], cwd=repo, env=project_env(), capture_output=True, text=True,
                         timeout=300)
    assert not check or out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return out


def outputs(repo: Path) -> dict[str, bytes]:
    files = sorted((repo / "out").rglob("*")) if (repo / "out").is_dir() else []
    found = {str(p.relative_to(repo)): p.read_bytes() for p in files if p.is_file()}
    if (repo / "metrics.json").is_file():
        found["metrics.json"] = (repo / "metrics.json").read_bytes()
    return found


def set_value(repo: Path, value) -> None:
    (repo / "params.yaml").write_text(f"toy:\n  value: {value}\n")


@pytest.fixture
def repo(tmp_path) -> Path:
    repo = tmp_path / "toy"
    repo.mkdir()
    (repo / "toy_stage.py").write_text(STAGE)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    (repo / "data.txt").write_text("7\n")
    set_value(repo, 3)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True, env=project_env())
    dvc(repo, "init", "-q")
    dvc(repo, "repro")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=project_env())
    subprocess.run(["git", "commit", "-qm", "good run"], cwd=repo, check=True, env=project_env())
    return repo


def test_bad_param_and_bad_input_keep_the_last_good_outputs(repo):
    good = outputs(repo)
    assert set(good) == {"out/model.bin", "out/notes.txt", "metrics.json"}

    set_value(repo, '"fast"')
    failed = dvc(repo, "repro", check=False)
    assert failed.returncode != 0
    assert "toy.value='fast' is not an integer" in failed.stdout
    assert "kept the last good results: metrics.json, out" in failed.stdout, failed.stdout
    assert outputs(repo) == good

    # A misspelled key: with the section listed (as the project's dvc.yaml does), DVC runs the stage, whose
    # own check fails and puts the outputs back. (With the key listed, DVC would fail itself, after removing
    # the outputs and before any stage code runs.)
    (repo / "params.yaml").write_text("toy:\n  valeu: 3\n")
    failed = dvc(repo, "repro", check=False)
    assert failed.returncode != 0 and "KeyError" in failed.stdout and "kept the last good results" in failed.stdout
    assert outputs(repo) == good

    set_value(repo, 3)  # the good params again: nothing to re-run, nothing lost
    assert "up to date" in dvc(repo, "status").stdout

    (repo / "data.txt").write_text("seven\n")
    failed = dvc(repo, "repro", check=False)
    assert failed.returncode != 0 and "data.txt: expected a number" in failed.stdout
    assert "kept the last good results" in failed.stdout and outputs(repo) == good
    assert not list(repo.glob(".*restore-*")) and not list(repo.glob(".*failed-*"))  # no temporaries left

    # A run that succeeds keeps its own new outputs: nothing puts the older ones back after it.
    (repo / "data.txt").write_text("8\n")
    set_value(repo, 5)
    dvc(repo, "repro")
    time.sleep(3)  # the stage's watchdog has seen it end by then
    assert outputs(repo)["metrics.json"] == b'{"score": 40}' and outputs(repo)["out/model.bin"] == b"\x05" * 1000


def start_hanging_run(repo: Path) -> tuple[subprocess.Popen, int]:
    set_value(repo, '"hang"')
    (repo / "started").unlink(missing_ok=True)
    proc = subprocess.Popen([str(BIN / "dvc"), "repro"], cwd=repo, env=project_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (repo / "started").exists():
        assert proc.poll() is None, proc.stdout.read()[-2000:]
        time.sleep(0.2)
    assert (repo / "started").exists(), "the stage did not start"
    assert not (repo / "out").exists(), "DVC removes outputs before the command: the premise of this test"
    return proc, int((repo / "started").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("kill", ["stage SIGKILL", "dvc SIGTERM"])
def test_a_killed_run_keeps_the_last_good_outputs(repo, kill):
    good = outputs(repo)
    proc, stage_pid = start_hanging_run(repo)
    if kill == "stage SIGKILL":  # nothing runs in the stage: its watchdog puts the outputs back
        os.kill(stage_pid, signal.SIGKILL)
    else:  # the stage is told (SIGTERM) and puts them back on its way out
        os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=120)
    deadline = time.monotonic() + 180  # a busy machine: the watchdog's restore waits its turn
    while time.monotonic() < deadline and (outputs(repo) != good or psutil.pid_exists(stage_pid)):
        time.sleep(0.3)
    log = (repo / "logs" / "toy.log").read_text(errors="replace")
    assert outputs(repo) == good, f"{kill}: the stage's log ends with:\n{log[-3000:]}"
    if kill == "stage SIGKILL":  # the stage says nothing: its log tells what the watchdog did
        assert f"the stage (pid {stage_pid})" in log and "kept the last good results" in log, log[-3000:]
