"""A stage's outputs survive a dependency that does not exist (``prepare.root`` naming a missing folder), DVC
run for real.

DVC removes the stage's outputs and then fails computing the missing dependency's hash, before the stage's
command starts: no stage code can put them back (docs/failures.md). One command does
(``python -m stage_support.last_good``), and ``scripts/with_local_ray.py`` (``make demo``) runs it itself.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_last_good import DVC_YAML, STAGE, dvc, outputs, project_env

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration]


def _params(repo: Path, root: str) -> None:
    (repo / "params.yaml").write_text(f"toy:\n  value: 3\n  root: {root}\n")


def test_a_missing_input_folder_costs_no_output(tmp_path):
    repo = tmp_path / "toy"
    (repo / "raw").mkdir(parents=True)
    (repo / "raw" / "a.txt").write_text("a")
    (repo / "toy_stage.py").write_text(STAGE)
    # the input folder comes from params, as prepare's ${prepare.root}
    (repo / "dvc.yaml").write_text(DVC_YAML.replace("deps: [toy_stage.py, data.txt]",
                                                    "deps: [toy_stage.py, data.txt, '${toy.root}']"))
    (repo / "data.txt").write_text("7\n")
    _params(repo, "raw")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True, env=project_env())
    dvc(repo, "init", "-q")
    dvc(repo, "repro")
    good = outputs(repo)
    assert set(good) == {"out/model.bin", "out/notes.txt", "metrics.json"}

    _params(repo, "data/raw")
    failed = dvc(repo, "repro", check=False)
    assert failed.returncode != 0 and "No such file or directory" in failed.stderr + failed.stdout
    assert outputs(repo) == {}, "DVC removed the outputs before failing: the premise of this test"
    assert not (repo / "logs" / "toy.log").exists() or "FAILED" not in (repo / "logs" / "toy.log").read_text()

    run = [sys.executable, "-m", "stage_support.last_good"]
    back = subprocess.run(run, cwd=repo, env=project_env(), capture_output=True, text=True, timeout=120)
    assert back.returncode == 0 and "last_good: toy: kept the last good results: metrics.json, out" in back.stdout
    assert outputs(repo) == good
    again = subprocess.run(run, cwd=repo, env=project_env(), capture_output=True, text=True, timeout=120)
    assert "nothing to put back" in again.stdout and outputs(repo) == good

    # make demo's wrapper does it after the failed command (a given cluster address: no Ray is started)
    wrapped = subprocess.run([sys.executable, str(ROOT / "scripts" / "with_local_ray.py"),
                              str(Path(sys.executable).parent / "dvc"), "repro"], cwd=repo,
                             env={**project_env(), "RAY_ADDRESS": "127.0.0.1:1"}, capture_output=True, text=True,
                             timeout=300)
    assert wrapped.returncode != 0 and "last_good: toy: kept the last good results" in wrapped.stdout
    assert outputs(repo) == good
